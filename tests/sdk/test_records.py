"""tunery.sdk.records: a result read from a cluster never names a Failed trial as best, even
where Katib's currentOptimalTrial does (Katib ranks every trial with metrics)."""

from __future__ import annotations

from tunery.sdk import records
from tunery.trials import Objective, ObjectiveType, TrialCondition

MAX = Objective(ObjectiveType.MAXIMIZE, "acc")


def _info(name: str, condition: TrialCondition, acc: float) -> records.TrialInfo:
    metric = {"name": "acc", "min": str(acc), "max": str(acc), "latest": str(acc)}
    return records.trial_info(
        name=name, assignment={"x": str(acc)}, condition=condition, reason="", message="",
        metrics=[metric], objective=MAX, space=None,
    )  # fmt: skip


def _status(best: str, acc: float) -> dict:
    metric = {"name": "acc", "min": str(acc), "max": str(acc), "latest": str(acc)}
    return {
        "currentOptimalTrial": {
            "bestTrialName": best,
            "parameterAssignments": [{"name": "x", "value": str(acc)}],
            "observation": {"metrics": [metric]},
        },
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Done"}],
    }


def test_katibs_failed_best_is_replaced_by_the_best_trial_that_did_not_fail() -> None:
    trials = [
        _info("crashed", TrialCondition.FAILED, 0.99),
        _info("ok", TrialCondition.SUCCEEDED, 0.8),
        _info("stopped", TrialCondition.EARLY_STOPPED, 0.7),
    ]
    result = records.tune_result("e", _status("crashed", 0.99), trials, MAX, None)
    assert result.best_trial == "ok" and result.best_value == 0.8
    assert result.best_parameters == {"x": "0.8"}


def test_with_only_failed_trials_there_is_no_best() -> None:
    trials = [_info("crashed", TrialCondition.FAILED, 0.99)]
    result = records.tune_result("e", _status("crashed", 0.99), trials, MAX, None)
    assert result.best_trial is None and result.best_value is None


def test_a_best_that_did_not_fail_is_kept() -> None:
    trials = [_info("ok", TrialCondition.SUCCEEDED, 0.8)]
    result = records.tune_result("e", _status("ok", 0.8), trials, MAX, None)
    assert result.best_trial == "ok"
