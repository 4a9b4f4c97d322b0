"""bench.run_all's document surgery: generated blocks replaced, hand-written prose kept."""

from __future__ import annotations

import pytest

from bench.run_all import BENCHES, DocumentError, as_block, replace_block

DOC = """# Benchmarks

Intro written by hand.

## Collector

Prose before.

<!-- bench:collector:begin -->
| old | table |
<!-- bench:collector:end -->

Prose after, with a | pipe.

## Controller

Controller prose.
"""


def test_replaces_only_between_markers() -> None:
    out = replace_block(DOC, "collector", "Collector", "| new | table |")
    assert "| old | table |" not in out
    assert "<!-- bench:collector:begin -->\n| new | table |\n<!-- bench:collector:end -->" in out
    assert out.replace("| new | table |", "| old | table |") == DOC


def test_is_idempotent() -> None:
    once = replace_block(DOC, "collector", "Collector", "x")
    assert replace_block(once, "collector", "Collector", "x") == once


def test_missing_markers_go_at_the_end_of_the_section_with_that_title() -> None:
    out = replace_block(DOC, "controller", "Controller", "| t |")
    assert out.endswith(
        "Controller prose.\n\n<!-- bench:controller:begin -->\n| t |\n"
        "<!-- bench:controller:end -->\n"
    )
    mid = replace_block(DOC, "collector2", "Collector", "| c |")
    assert mid.index("<!-- bench:collector2:begin -->") < mid.index("## Controller")
    assert mid.index("Prose after") < mid.index("<!-- bench:collector2:begin -->")


def test_missing_section_is_appended() -> None:
    out = replace_block(DOC, "quality", "Optimisation quality", "| q |")
    assert out.startswith(DOC.rstrip("\n"))
    assert out.endswith(
        "## Optimisation quality\n\n<!-- bench:quality:begin -->\n| q |\n"
        "<!-- bench:quality:end -->\n"
    )


@pytest.mark.parametrize(
    "broken",
    [
        DOC.replace("<!-- bench:collector:end -->\n", ""),
        DOC.replace("<!-- bench:collector:begin -->", "<!-- bench:collector:end -->", 1).replace(
            "| old | table |\n<!-- bench:collector:end -->",
            "| old | table |\n<!-- bench:collector:begin -->",
        ),
    ],
)
def test_broken_markers_are_refused(broken: str) -> None:
    with pytest.raises(DocumentError, match="collector"):
        replace_block(broken, "collector", "Collector", "x")


def test_printed_titles_do_not_become_headings_and_tables_start_blocks() -> None:
    printed = "# Collector (today)\n# command: x\n| a |\n|---|\n| 1 |\ntext\n| b |\n"
    assert as_block(printed) == (
        "Collector (today)\n\ncommand: x\n\n| a |\n|---|\n| 1 |\n\ntext\n\n| b |"
    )


def test_every_benchmark_in_bench_is_run() -> None:
    from pathlib import Path

    modules = {
        p.stem
        for p in (Path(__file__).resolve().parent.parent / "bench").glob("*.py")
        if p.stem not in ("__init__", "run_all", "problems")
    }
    assert modules == {b.module.removeprefix("bench.") for b in BENCHES}


def test_resume_reaches_only_the_benchmarks_that_save_their_runs() -> None:
    from pathlib import Path

    markdown = Path("/tmp/report.md")
    for bench in BENCHES:
        args = bench.args(quick=False, markdown=markdown, resume=True)
        assert ("--resume" in args) == bench.resumable
        assert "--resume" not in bench.args(quick=False, markdown=markdown)
    assert {b.key for b in BENCHES if b.resumable} == {"quality"}
