"""Run every benchmark in ``bench/`` and regenerate the tables in docs/benchmarks.md.

One command (shared/benchmarks.md: "every benchmark ... runs with one command ... and is
recorded in docs/benchmarks.md with the command, the date, the machine and the library
versions")::

    python -m bench.run_all               # full runs (hours: the quality benchmark dominates)
    python -m bench.run_all --quick       # CI-sized runs, under an hour on 2 busy cores
    python -m bench.run_all --only quality,earlystop --quick
    python -m bench.run_all --quick --no-write   # print, leave the document alone
    python -m bench.run_all --resume      # after an interruption: finished quality runs kept

Each benchmark runs in its own process, one after the other (each pins math libraries to one
thread and parallelises itself). Its tables replace what lies between its markers in the
document::

    <!-- bench:quality:begin -->
    ... generated; edited by hand at your peril ...
    <!-- bench:quality:end -->

Everything outside the markers is prose that engineers wrote and is kept as it is. A
benchmark whose markers are missing gets them appended at the end of the section whose
heading is its title (or of a new section with that heading). A benchmark that fails keeps
its previous tables; the command then exits 1.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
MARKDOWN_FILE = "{markdown}"
"""Placeholder in a benchmark's arguments for the file it writes its Markdown report to;
benchmarks without one print their report (``--markdown``) on stdout."""


@dataclass(frozen=True)
class Bench:
    key: str
    title: str
    module: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    resumable: bool = False
    """Takes ``--resume``: keeps the finished runs its ``--json`` file holds."""

    def args(self, quick: bool, markdown: Path, resume: bool = False) -> list[str]:
        chosen = list(self.quick if quick else self.full)
        if resume and self.resumable:
            chosen.append("--resume")
        return [str(markdown) if a == MARKDOWN_FILE else a for a in chosen]

    @property
    def writes_file(self) -> bool:
        return MARKDOWN_FILE in self.full


BENCHES: tuple[Bench, ...] = (
    Bench(
        "latency",
        "Suggestion latency",
        "bench.suggest_latency",
        ("--markdown", MARKDOWN_FILE),
        ("--quick", "--markdown", MARKDOWN_FILE),
    ),
    Bench(
        "quality",
        "Optimisation quality",
        "bench.quality",
        ("--markdown", MARKDOWN_FILE, "--json", "bench/results/quality.json"),
        ("--quick", "--markdown", MARKDOWN_FILE, "--json", "bench/results/quality-quick.json"),
        resumable=True,
    ),
    Bench(
        "earlystop",
        "Early stopping",
        "bench.earlystop",
        ("--markdown", MARKDOWN_FILE),
        ("--quick", "--markdown", MARKDOWN_FILE),
    ),
    Bench(
        "gp",
        "GP quality and latency",
        "bench.gp_quality",
        ("--seeds", "10", "--latency-trials", "200"),
        ("--seeds", "3"),
    ),
    Bench(
        "multiobjective",
        "Multi-objective",
        "bench.multiobjective",
        ("--seeds", "10"),
        ("--seeds", "2", "--budget", "100", "--problems", "zdt1,mixed"),
    ),
    Bench(
        "controller",
        "Controller",
        "bench.controller",
        ("--markdown",),
        ("--trials", "48", "--trivial-trials", "48", "--markdown"),
    ),
    Bench(
        "tune",
        "tune() throughput",
        "bench.tune_throughput",
        ("--markdown",),
        ("--trials", "50", "--repeats", "1", "--markdown"),
    ),
    Bench(
        "collector",
        "Collector",
        "bench.collector",
        ("--markdown",),
        ("--lines", "200000", "--repeat", "3", "--probes", "10", "--markdown"),
    ),
    Bench(
        "store",
        "Store at scale",
        "bench.store",
        ("--markdown",),
        ("--trials", "2000", "--markdown"),
    ),
    Bench(
        "scale",
        "Scale",
        "bench.scale",
        ("compare",),
        ("compare", "--trials", "400", "--window", "100", "--store-trials", "5000"),
    ),
    Bench(
        "operator_scale",
        "Scale",
        "bench.operator_scale",
        ("compare",),
        ("compare", "--sizes", "200,1000", "--steps", "5"),
    ),
    Bench(
        "validate",
        "Validation cost",
        "bench.validate_cost",
        ("--markdown",),
        ("--mb", "1", "--repeat", "1", "--markdown"),
    ),
    Bench(
        "dashboard",
        "Dashboard",
        "bench.dashboard",
        ("--markdown",),
        ("--trials", "2000", "--requests", "10", "--loads", "1", "--markdown"),
    ),
    Bench(
        "pbt",
        "Population based training",
        "bench.pbt_digits",
        ("--seeds", "10"),
        ("--seeds", "2"),
    ),
    Bench(
        "multifidelity",
        "Multi-fidelity",
        "bench.multifidelity",
        ("--markdown", MARKDOWN_FILE),
        ("--task", "surrogate", "--seeds", "3", "--markdown", MARKDOWN_FILE),
    ),
    Bench(
        "warmstart",
        "Warm start",
        "bench.warmstart",
        ("--algorithms", "tpe,multivariate-tpe", "--seeds", "10"),
        ("--algorithms", "tpe", "--seeds", "2"),
    ),
    Bench(
        "conditional",
        "Conditional spaces and constraints",
        "bench.conditional_constraints",
        ("--seeds", "10", "--trials", "60", "--optuna-gp"),
        ("--seeds", "2", "--trials", "20"),
    ),
    Bench(
        "namespaces",
        "Namespaces (issue 16 point 8)",
        "bench.namespaces",
        (),
        ("--trials", "20", "--reports", "50"),
    ),
    Bench(
        "metrics",
        "Metrics overhead",
        "bench.metrics_overhead",
        ("--rounds", "30", "--calls", "200"),
        ("--rounds", "3", "--calls", "50"),
    ),
)


# -- the document --------------------------------------------------------------------------------


def begin_marker(key: str) -> str:
    return f"<!-- bench:{key}:begin -->"


def end_marker(key: str) -> str:
    return f"<!-- bench:{key}:end -->"


class DocumentError(ValueError):
    """docs/benchmarks.md has broken markers (one without the other, or out of order)."""


def replace_block(document: str, key: str, title: str, content: str) -> str:
    """``document`` with the block of ``key`` set to ``content``; prose is left untouched."""
    begin, end = begin_marker(key), end_marker(key)
    block = f"{begin}\n{content.strip()}\n{end}"
    has_begin, has_end = begin in document, end in document
    if has_begin != has_end or document.count(begin) > 1 or document.count(end) > 1:
        raise DocumentError(f"docs/benchmarks.md: the markers of {key!r} are not one pair")
    if has_begin:
        start, stop = document.index(begin), document.index(end)
        if stop < start:
            raise DocumentError(f"docs/benchmarks.md: {end} comes before {begin}")
        return document[:start] + block + document[stop + len(end) :]
    heading = re.search(rf"^## {re.escape(title)}\s*$", document, flags=re.MULTILINE)
    if heading is None:
        return document.rstrip("\n") + f"\n\n## {title}\n\n{block}\n"
    following = re.search(r"^## ", document[heading.end() :], flags=re.MULTILINE)
    insert_at = heading.end() + following.start() if following else len(document)
    before = document[:insert_at].rstrip("\n")
    after = document[insert_at:]
    return before + f"\n\n{block}\n" + ("\n" + after if after else "")


def as_block(output: str) -> str:
    """A benchmark's printed report as Markdown inside a section: its ``#`` title lines become
    plain paragraphs (they would otherwise be top-level headings), and every table is a block
    of its own (a table under a text line would not render; a text line under a table would
    become one of its rows)."""
    lines: list[str] = []
    for line in output.strip().splitlines():
        is_title = line.startswith("#")
        text = line.lstrip("#").strip() if is_title else line
        after_table = bool(lines) and lines[-1].startswith("|")
        starts_table = text.startswith("|") and not after_table
        ends_table = after_table and bool(text) and not text.startswith("|")
        if lines and lines[-1] and (is_title or starts_table or ends_table):
            lines.append("")
        lines.append(text)
    return "\n".join(lines)


# -- environment ---------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> str:
    found = [f"Python {platform.python_version()}"]
    for module, label in (
        ("numpy", "numpy"),
        ("scipy", "scipy"),
        ("sklearn", "scikit-learn"),
        ("grpc", "grpcio"),
        ("google.protobuf", "protobuf"),
        ("sqlalchemy", "SQLAlchemy"),
        ("optuna", "optuna"),
        ("hyperopt", "hyperopt"),
        ("skopt", "scikit-optimize"),
        ("cmaes", "cmaes"),
        ("torch", "torch"),
    ):
        try:
            mod = __import__(module, fromlist=["__version__"])
            found.append(f"{label} {mod.__version__}")
        except Exception:
            found.append(f"{label} not installed")
    import sqlite3

    found.append(f"SQLite {sqlite3.sqlite_version}")
    return ", ".join(found)


def stamp(command: str, bench_command: str, seconds: float) -> str:
    load = os.getloadavg()
    return (
        f"_Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `{command}` "
        f"(this benchmark: `{bench_command}`, {seconds / 60:.1f} min) on {cpu_model()}, "
        f"{os.cpu_count()} cores, load average {load[0]:.1f} at the end; {versions()}._"
    )


# -- running -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    bench: Bench
    ok: bool
    block: str
    seconds: float
    detail: str = ""


def run_bench(
    bench: Bench, quick: bool, command: str, timeout: float | None, resume: bool = False
) -> Outcome:
    with tempfile.TemporaryDirectory(prefix=f"bench-{bench.key}-") as tmp:
        markdown = Path(tmp) / "report.md"
        args = bench.args(quick, markdown, resume)
        shown = [a for a in args if a != str(markdown)]
        if bench.writes_file:  # the report's temporary file is not part of the command
            shown.remove("--markdown")
        bench_command = " ".join(["python", "-m", bench.module, *map(shlex.quote, shown)])
        print(f"== {bench.title}: {bench_command}", file=sys.stderr, flush=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", bench.module, *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            seconds = time.perf_counter() - started
            return Outcome(bench, False, "", seconds, f"timed out after {seconds:.0f} s")
        seconds = time.perf_counter() - started
        if bench.writes_file:
            report = markdown.read_text() if markdown.exists() else ""
        else:
            report = proc.stdout
        if not report.strip():
            return Outcome(bench, False, "", seconds, f"exit {proc.returncode}, no report")
        block = stamp(command, bench_command, seconds) + "\n\n" + as_block(report)
        detail = "" if proc.returncode == 0 else f"exit {proc.returncode} (report kept)"
        return Outcome(bench, True, block, seconds, detail)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    keys = [b.key for b in BENCHES]
    parser.add_argument("--quick", action="store_true", help="CI-sized runs of every benchmark")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(keys)}")
    parser.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    parser.add_argument("--doc", type=Path, default=DOC, help="the document to update")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit the doc")
    parser.add_argument("--timeout", type=float, help="seconds per benchmark (default: none)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="after an interruption: benchmarks that save their runs (quality) keep the "
        "finished ones and run the rest",
    )
    args = parser.parse_args(argv)
    chosen = [k for k in (args.only.split(",") if args.only else keys) if k]
    skipped = {k for k in args.skip.split(",") if k}
    for k in [*chosen, *skipped]:
        if k not in keys:
            parser.error(f"unknown benchmark {k!r}; known: {', '.join(keys)}")
    command = "python -m bench.run_all " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    command = command.strip()
    outcomes = [
        run_bench(b, args.quick, command, args.timeout, args.resume)
        for b in BENCHES
        if b.key in chosen and b.key not in skipped
    ]
    document = args.doc.read_text() if args.doc.exists() else "# Benchmarks\n"
    for outcome in outcomes:
        status = "ok" if outcome.ok else "FAILED"
        note = f" — {outcome.detail}" if outcome.detail else ""
        print(
            f"{outcome.bench.title}: {status} in {outcome.seconds / 60:.1f} min{note}",
            file=sys.stderr,
        )
        if outcome.ok:
            print(f"\n## {outcome.bench.title}\n\n{outcome.block}\n")
            document = replace_block(
                document, outcome.bench.key, outcome.bench.title, outcome.block
            )
    if not args.no_write:
        args.doc.write_text(document)
        print(f"updated {args.doc}", file=sys.stderr)
    return 0 if all(o.ok and not o.detail for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
