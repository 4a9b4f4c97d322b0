"""An infeasible trial is never the best (issue 20 point 3): the controller's optimal trial and
trial view, the store's derived objective value, and the SDK's TuneResult (also when a
Katib-written status names an infeasible trial)."""

from __future__ import annotations

from controller.status import optimal_trial, trial_is_feasible
from controller.trial_view import TrialView
from tunery.sdk.records import trial_info, tune_result
from tunery.store.base import TrialRecord
from tunery.store.derived import ObjectiveRule
from tunery.trials import MetricStrategy, Objective, ObjectiveType, TrialCondition

OBJECTIVE = Objective(
    ObjectiveType.MINIMIZE,
    "loss",
    additional_metric_names=("mem",),
    strategies={"loss": MetricStrategy.MIN, "mem": MetricStrategy.LATEST},
    constraints=("mem",),
)


def observation(loss: float, mem: float | None) -> dict:
    metrics = [{"name": "loss", "min": str(loss), "max": str(loss), "latest": str(loss)}]
    if mem is not None:
        metrics.append({"name": "mem", "min": str(mem), "max": str(mem), "latest": str(mem)})
    return {"metrics": metrics}


def record(name: str, loss: float, mem: float | None) -> TrialRecord:
    return TrialRecord(
        name=name,
        experiment_name="e",
        assignment={"x": "1"},
        condition=TrialCondition.SUCCEEDED,
        observation=observation(loss, mem),
    )


TRIALS = [
    record("infeasible-best-loss", 0.1, 2.0),
    record("unreported-constraint", 0.2, None),
    record("feasible", 0.5, -1.0),
    record("feasible-on-the-boundary", 0.7, 0.0),
]


def test_feasibility_of_records() -> None:
    assert [trial_is_feasible(t, OBJECTIVE) for t in TRIALS] == [False, False, True, True]


def test_the_optimal_trial_and_the_trial_view_skip_infeasible_trials() -> None:
    best = optimal_trial(TRIALS, OBJECTIVE)
    assert best is not None and best[0].name == "feasible" and best[1] == 0.5
    view = TrialView(OBJECTIVE)
    view.apply(TRIALS)
    found = view.best()
    assert found is not None and found[0].name == "feasible"


def test_the_store_ranks_only_feasible_trials() -> None:
    spec = {
        "spec": {
            "objective": {
                "type": "minimize",
                "objectiveMetricName": "loss",
                "constraints": ["mem"],
                "metricStrategies": [{"name": "mem", "value": "latest"}],
            }
        }
    }
    rule = ObjectiveRule.from_spec(spec)
    assert rule is not None
    assert [rule.value(t.observation) for t in TRIALS] == [None, None, 0.5, 0.7]
    plain = ObjectiveRule.from_spec({"spec": {"objective": {"objectiveMetricName": "loss"}}})
    assert plain is not None and plain.value(TRIALS[0].observation) == 0.1


def test_tune_result_never_reports_an_infeasible_best() -> None:
    infos = [
        trial_info(
            name=t.name,
            assignment=t.assignment,
            condition=t.condition,
            reason="",
            message="",
            metrics=t.observation["metrics"],
            objective=OBJECTIVE,
            space=None,
        )
        for t in TRIALS
    ]
    katib_status = {  # Katib ranks every trial: it names the infeasible one
        "currentOptimalTrial": {
            "bestTrialName": "infeasible-best-loss",
            "parameterAssignments": [{"name": "x", "value": "1"}],
            "observation": observation(0.1, 2.0),
        }
    }
    result = tune_result("e", katib_status, infos, OBJECTIVE, None)
    assert result.best_trial == "feasible" and result.best_value == 0.5


def test_the_history_plot_counts_only_feasible_trials_as_best() -> None:
    from tunery.store.base import ExperimentRecord
    from tunery.visualization import data

    spec = {
        "spec": {
            "objective": {
                "type": "minimize",
                "objectiveMetricName": "loss",
                "additionalMetricNames": ["mem"],
                "constraints": ["mem"],
                "metricStrategies": [
                    {"name": "loss", "value": "min"},
                    {"name": "mem", "value": "latest"},
                ],
            },
            "parameters": [
                {"name": "x", "parameterType": "int", "feasibleSpace": {"min": "0", "max": "9"}}
            ],
        }
    }
    history = data.optimization_history(data.Snapshot(ExperimentRecord("e", spec), TRIALS))
    assert history["feasible"] == [False, False, True, True]
    assert history["best"] == [None, None, 0.5, 0.5]


def test_the_store_has_no_best_while_every_trial_is_infeasible(tmp_path) -> None:
    from tunery.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/t.db")
    spec = {
        "spec": {
            "objective": {
                "type": "minimize",
                "objectiveMetricName": "loss",
                "constraints": ["mem"],
                "metricStrategies": [{"name": "mem", "value": "latest"}],
            }
        }
    }
    store.create_experiment("e", spec)
    for trial in TRIALS[:2]:  # infeasible, and a constraint not reported
        store.create_trial(trial)
    assert store.best_trial("e") is None
    store.create_trial(TRIALS[2])
    best = store.best_trial("e")
    assert best is not None and best.name == "feasible"
