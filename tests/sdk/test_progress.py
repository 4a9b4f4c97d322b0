"""tunery.sdk.progress, the live view of `tune()` and `tunery run`: counts N/M, elapsed, ETA
and the best so far; running trials' metrics as they arrive; "... N more" for rows left out;
plain lines (pipes, notebooks) with the count and the best (issue 15, defect 8)."""

from __future__ import annotations

import datetime as dt
import io
import types
from collections.abc import Sequence

import pytest
from rich.console import Console

from tunery.sdk.progress import ProgressView, duration, short_value
from tunery.store.base import TrialRecord
from tunery.trials import MetricStrategy, Objective, ObjectiveType, Observation, TrialCondition

MIN_LOSS = Objective(ObjectiveType.MINIMIZE, "loss", None, ("accuracy",))
RUNNING = types.SimpleNamespace(done=False, condition="Running", reason="ExperimentRunning")


def _trial(
    name: str = "t1",
    condition: TrialCondition = TrialCondition.SUCCEEDED,
    loss: float | None = 0.25,
    lr: str = "0.1",
) -> TrialRecord:
    metrics = []
    if loss is not None:
        metrics = [
            {"name": "loss", "min": str(loss), "max": str(loss * 8), "latest": str(loss * 2)},
            {"name": "accuracy", "min": "0.4", "max": "0.9", "latest": "0.8"},
        ]
    return TrialRecord(
        name=name,
        experiment_name="e",
        assignment={"lr": lr},
        condition=condition,
        reason=f"Trial{condition.value}",
        message="" if condition is TrialCondition.SUCCEEDED else "exit code 1",
        observation={"metrics": metrics} if metrics else {},
    )


@pytest.mark.parametrize(
    ("objective", "shown"),
    [
        # Katib's default strategy follows the objective's direction for every metric
        (MIN_LOSS, "loss=0.25 accuracy=0.4"),
        (Objective(ObjectiveType.MAXIMIZE, "accuracy", None, ("loss",)), "loss=2 accuracy=0.9"),
        (
            Objective(
                ObjectiveType.MINIMIZE,
                "loss",
                None,
                ("accuracy",),
                {"loss": MetricStrategy.LATEST, "accuracy": MetricStrategy.MAX},
            ),
            "loss=0.5 accuracy=0.9",
        ),
        (None, "loss=0.5 accuracy=0.8"),
    ],
)
def test_a_finished_trials_line_shows_metrics_as_the_strategies_select_them(
    objective: Objective | None, shown: str
) -> None:
    trial = _trial()
    line = ProgressView("e", objective=objective, max_trials=12).line(trial, [trial], 1)
    assert line.startswith(f"[1/12] t1 Succeeded: {shown} [lr=0.1]  | ")
    assert line.endswith("elapsed 0:00")


def _plain(view_args: dict, steps: Sequence[Sequence[TrialRecord]]) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with ProgressView("e", console=console, **view_args) as view:
        for trials in steps:
            view.update(RUNNING, trials)
    return out.getvalue().splitlines()


def test_plain_lines_carry_the_count_and_the_best_so_far() -> None:
    a = _trial("a", loss=0.5)
    b = _trial("b", TrialCondition.FAILED, loss=0.01)  # reported, then crashed
    c = _trial("c", loss=0.25)
    lines = _plain(
        {"objective": MIN_LOSS, "max_trials": 3},
        [[a, _trial("b", TrialCondition.RUNNING, None)], [a, b], [a, b, c]],
    )
    assert len(lines) == 3  # one per finished trial, each once
    assert lines[0].startswith("[1/3] a Succeeded: loss=0.5") and "best loss=0.5 (a)" in lines[0]
    assert lines[1].startswith("[2/3] b Failed") and "(TrialFailed: exit code 1)" in lines[1]
    assert "best loss=0.5 (a)" in lines[1]  # a Failed trial is never the best
    assert lines[2].startswith("[3/3] c Succeeded") and "best loss=0.25 (c)" in lines[2]


def test_the_terminal_view_shows_counts_eta_running_metrics_and_what_is_left_out() -> None:
    finished = [
        _trial(f"done-{i}", loss=0.1 * (i + 1), lr=f"{0.123456789 * (i + 1)}") for i in range(10)
    ]
    running = [_trial(f"run-{i}", TrialCondition.RUNNING, None) for i in range(2)]
    reads: list[str] = []

    def observations(name: str) -> list[Observation]:
        reads.append(name)
        now = dt.datetime.now(dt.UTC)
        return [Observation.of("loss", 0.9, 0, now), Observation.of("loss", 0.777, 1, now)]

    view = ProgressView(
        "e", objective=MIN_LOSS, max_trials=12, observations=observations, max_rows=10
    )
    view._started -= 20  # 10 trials finished in 20 s: 2 left take about 4 s
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    console.print(view.render(RUNNING, [*finished, *running]))
    console.print(view.render(RUNNING, [*finished, *running]))  # metrics cached for a second
    text = out.getvalue()
    assert "10/12 trials finished" in text and "Succeeded 10" in text and "Running 2" in text
    assert "elapsed 0:20" in text and "ETA 0:04" in text
    assert "best so far: loss=0.1  done-0  lr=0.1235" in text  # parameters rounded
    assert text.count("loss=0.777") == 4  # each running trial's latest report, twice rendered
    assert sorted(reads) == ["run-0", "run-1"]
    assert "done-9" in text and "done-2" in text and "done-1 " not in text
    assert "... 2 more trials not shown" in text  # 2 running + 8 finished rows of 12


def test_helpers() -> None:
    assert duration(3725) == "1:02:05" and duration(65.4) == "1:05"
    assert short_value("0.000123456789") == "0.0001235" and short_value("128") == "128"
    assert short_value("adam") == "adam" and short_value("1e-05") == "1e-05"


class _NoScan(list):  # type: ignore[type-arg]
    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the view scanned every trial")


def test_plain_lines_follow_a_steps_changes_without_scanning_the_history() -> None:
    """With the step's changes, counts and best (controller.reconcile.StepResult), a line per
    newly finished trial costs the same at any length of history."""
    from controller.status import TrialCounts

    a, c = _trial("a", loss=0.5), _trial("c", loss=0.25)
    counts = TrialCounts(5000, 0, 1, 5000 - 1, 0, 0, 0, 0)
    step = types.SimpleNamespace(
        done=False, condition="Running", reason="", changed=[a, c], counts=counts, best=(c, 0.25)
    )
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with ProgressView("e", console=console, objective=MIN_LOSS, max_trials=6000) as view:
        view.update(step, _NoScan([a, c]))
        view.update(step, _NoScan([a, c]))  # reported once
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[4999/6000] a Succeeded") and "best loss=0.25 (c)" in lines[0]


def test_warm_start_trials_are_neither_printed_nor_counted_as_run() -> None:
    import dataclasses

    warm = dataclasses.replace(
        _trial("w", loss=0.1), reason="WarmStart", labels={"tunery.io/warm-start": "true"}
    )
    a = _trial("a", loss=0.5)
    lines = _plain({"objective": MIN_LOSS, "max_trials": 2}, [[warm], [warm, a]])
    assert len(lines) == 1  # the imported result is not a finished trial of this run
    assert lines[0].startswith("[1/2] a Succeeded: loss=0.5")
    assert "best loss=0.1 (w)" in lines[0]  # but it may be the best
