"""The quality benchmark's bookkeeping: the bar rules on known numbers, and --resume running
only what an interrupted run did not finish (bench/quality.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import quality
from bench.problems import PROBLEMS
from bench.quality import RANDOM, RunResult, check_bars

F_STAR = PROBLEMS["branin"].f_star


def runs(method: str, regrets: list[float]) -> list[RunResult]:
    """One 50-trial run per seed whose best value has the given regret."""
    return [
        RunResult(method, "branin", seed, 50, (F_STAR + 10.0,) * 49 + (F_STAR + r,), 0.1)
        for seed, r in enumerate(regrets)
    ]


def verdicts(results: list[RunResult]) -> dict[str, tuple[str, float]]:
    return {c.bar: (c.verdict, c.p_worse) for c in check_bars(results)}


def test_tpe_within_the_baselines_iqr_passes_and_clearly_worse_fails() -> None:
    random = runs(RANDOM, [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9])
    baseline = runs(quality.OPTUNA_TPE_UNI, [0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17])
    level = runs("tunery tpe", [0.10, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18])
    got = verdicts(random + baseline + level)
    bar = "tunery tpe within IQR of / better than optuna TPE univariate"
    assert got[bar][0] == "pass"
    assert got[bar][1] > 0.05  # the seeds cannot tell them apart
    assert got["tunery tpe clearly better than random (median < random's Q1)"][0] == "pass"

    worse = runs("tunery tpe", [0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6])
    got = verdicts(random + baseline + worse)
    assert got[bar][0] == "FAIL"
    assert got[bar][1] < 0.01
    assert got["tunery tpe clearly better than random (median < random's Q1)"][0] == "FAIL"


def test_a_failed_run_leaves_its_method_out_of_the_bars() -> None:
    baseline = runs(quality.OPTUNA_TPE_UNI, [0.1, 0.2, 0.3])
    ours = runs("tunery tpe", [0.1, 0.2])
    ours.append(RunResult("tunery tpe", "branin", 2, 50, (), 0.0, "RpcError: boom"))
    assert check_bars(baseline + ours) == []


@pytest.mark.slow
def test_resume_keeps_finished_runs_and_runs_only_the_missing_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "quality.json"
    common = ["--problems", "branin", "--methods", RANDOM, "--budget", "5", "--workers", "1"]
    assert quality.main([*common, "--seeds", "2", "--json", str(saved)]) == 0
    first = json.loads(saved.read_text())
    assert sorted(r["seed"] for r in first["runs"]) == [0, 1]

    capsys.readouterr()
    assert quality.main([*common, "--seeds", "3", "--json", str(saved), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resuming: 2 runs kept" in err and "1 to run" in err
    assert "seed 0" not in err and "seed 2" in err
    second = json.loads(saved.read_text())
    assert sorted(r["seed"] for r in second["runs"]) == [0, 1, 2]
    assert second["runs"][:2] == first["runs"]  # kept as they were, not rerun
    assert "--resume" not in second["command"]
    assert second["notes"] == [
        f"Resumed: 2 runs come from an earlier invocation: `{first['command']}` — "
        f"{first['environment']}."
    ]


def test_resume_without_a_json_file_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        quality.main(["--resume"])
    assert exc.value.code == 2
