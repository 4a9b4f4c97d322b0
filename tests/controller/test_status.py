"""controller.status: the optimal trial never is a Failed one (a trial that reported a metric
and then crashed), so neither the status, the goal check nor ``tunery best`` show it."""

from __future__ import annotations

import datetime as dt

from controller import status
from controller.trial_view import TrialView
from tunery.store.base import TrialRecord
from tunery.trials import Objective, ObjectiveType, TrialCondition


def _trial(name: str, condition: TrialCondition, loss: float) -> TrialRecord:
    metric = {"name": "loss", "min": str(loss), "max": str(loss), "latest": str(loss)}
    return TrialRecord(
        name=name,
        experiment_name="e",
        assignment={"x": "1"},
        condition=condition,
        observation={"metrics": [metric]},
    )


OBJECTIVE = Objective(ObjectiveType.MINIMIZE, "loss", goal=0.05)


def test_a_failed_trial_is_never_the_optimal_trial() -> None:
    trials = [
        _trial("crashed", TrialCondition.FAILED, 0.01),  # best value, but it crashed
        _trial("ok", TrialCondition.SUCCEEDED, 0.5),
        _trial("stopped", TrialCondition.EARLY_STOPPED, 0.7),
    ]
    best = status.optimal_trial(trials, OBJECTIVE)
    assert best is not None and best[0].name == "ok" and best[1] == 0.5
    built = status.build_status({}, TrialView.of(trials, OBJECTIVE), None, dt.datetime.now(dt.UTC))
    assert built["currentOptimalTrial"]["bestTrialName"] == "ok"


def test_only_failed_trials_leave_no_optimal_trial_and_no_goal() -> None:
    trials = [_trial("crashed", TrialCondition.FAILED, 0.01)]
    assert status.optimal_trial(trials, OBJECTIVE) is None
    counts = status.count_trials(trials)
    decided = status.decide_condition(counts, None, OBJECTIVE, max_trials=3, max_failed=None)
    assert decided[0] == "Running"  # the crashed 0.01 did not reach the 0.05 goal
    built = status.build_status({}, TrialView.of(trials, OBJECTIVE), None, dt.datetime.now(dt.UTC))
    assert built["currentOptimalTrial"]["bestTrialName"] == ""
