"""Warm start and enqueue in the store (``tunery.seeding``), on every store backend."""

from __future__ import annotations

from typing import Any

import pytest

from tunery.experiment import load_experiment
from tunery.seeding import (
    ENQUEUED_LABEL,
    WARM_START_LABEL,
    WARM_START_REASON,
    Result,
    SeedError,
    enqueue,
    is_queued,
    results_from,
    results_of,
    warm_start,
)
from tunery.store.base import Store, TrialRecord
from tunery.trials import TrialCondition


def document(name: str, parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    parameters = parameters or [
        {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.001", "max": "1"}},
        {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "4"}},
        {
            "name": "opt",
            "parameterType": "categorical",
            "feasibleSpace": {"list": ["sgd", "adam"]},
        },
    ]
    refs = [{"name": p["name"], "reference": p["name"]} for p in parameters]
    args = [f"--{p['name']}=${{trialParameters.{p['name']}}}" for p in parameters]
    doc = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "tpe"},
            "maxTrialCount": 5,
            "parameters": parameters,
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": refs,
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "main", "command": ["t", *args]}]}
                        }
                    },
                },
            },
        },
    }
    return load_experiment(doc).to_document()


def test_enqueue_creates_created_trials_in_order(store: Store) -> None:
    store.create_experiment("exp", document("exp"))
    points = [
        {"lr": 0.1, "layers": 2, "opt": "adam"},
        {"lr": "0.5", "layers": "3", "opt": "sgd"},  # strings, as from JSON/YAML/CLI
        {"lr": 1, "layers": 4.0, "opt": "sgd"},  # an int for a double, a whole float for an int
    ]
    created = enqueue(store, "exp", points)
    trials = store.list_trials("exp")
    assert [t.name for t in trials] == [t.name for t in created]
    assert [dict(t.assignment) for t in trials] == [
        {"lr": "0.1", "layers": "2", "opt": "adam"},
        {"lr": "0.5", "layers": "3", "opt": "sgd"},
        {"lr": "1.0", "layers": "4", "opt": "sgd"},
    ]
    assert all(t.condition is TrialCondition.CREATED and is_queued(t) for t in trials)
    assert all(t.labels[ENQUEUED_LABEL] == "true" for t in trials)
    # the same points again (a re-run after Ctrl-C) add nothing; a new one is appended
    again = enqueue(store, "exp", [*points, {"lr": 0.2, "layers": 1, "opt": "sgd"}])
    assert [dict(t.assignment)["lr"] for t in again] == ["0.2"]
    assert len(store.list_trials("exp")) == 4


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ({"lr": 2.0, "layers": 1, "opt": "sgd"}, "enqueue[1].lr: 2.0: 2.0 is outside"),
        ({"lr": 0.5, "layers": 1.5, "opt": "sgd"}, "enqueue[1].layers: 1.5"),
        ({"lr": 0.5, "layers": 1, "opt": "rmsprop"}, "enqueue[1].opt: 'rmsprop'"),
        ({"lr": "fast", "layers": 1, "opt": "sgd"}, "enqueue[1].lr: 'fast'"),
        ({"lr": 0.5, "layers": 1}, "enqueue[1]: missing value for parameter(s) opt"),
        ({"lr": 0.5, "layers": 1, "opt": "sgd", "bs": 3}, "enqueue[1]: unknown parameter(s) bs"),
        ({"lr": True, "layers": 1, "opt": "sgd"}, "enqueue[1].lr: True"),
    ],
)
def test_enqueue_rejects_a_point_outside_the_space_naming_it(
    sqlite_store: Store, point: dict[str, Any], message: str
) -> None:
    sqlite_store.create_experiment("exp", document("exp"))
    good = {"lr": 0.5, "layers": 1, "opt": "sgd"}
    with pytest.raises(SeedError) as info:
        enqueue(sqlite_store, "exp", [good, point])
    assert message in str(info.value)
    assert sqlite_store.list_trials("exp") == []  # all checked before any is written


def test_warm_start_stores_succeeded_trials_marked_warm_start(store: Store) -> None:
    store.create_experiment("exp", document("exp"))
    report = warm_start(
        store,
        "exp",
        results_from(
            [
                {"parameters": {"lr": 0.1, "layers": 2, "opt": "adam"}, "value": 0.25},
                ({"lr": 0.2, "layers": 2, "opt": "adam"}, {"loss": 0.5, "acc": 0.9}),
                ({"lr": 9.0, "layers": 2, "opt": "adam"}, 0.1),  # outside: skipped
                ({"lr": 0.3, "layers": 2, "opt": "adam"}, {"acc": 0.9}),  # no loss: skipped
                ({"lr": 0.1, "layers": 2, "opt": "adam"}, 0.3),  # same point again
            ],
            "loss",
        ),
    )
    assert len(report.added) == 2 and report.duplicates == 1
    assert [source for source, _ in report.skipped] == ["warm_start[2]", "warm_start[3]"]
    assert "parameters.lr: 9.0" in report.skipped[0][1]
    assert "objective metric 'loss'" in report.skipped[1][1]
    assert report.warnings()[0].startswith("warm start: skipped warm_start[2]: ")
    trials = store.list_trials("exp")
    assert len(trials) == 2
    for trial in trials:
        assert trial.condition is TrialCondition.SUCCEEDED
        assert trial.reason == WARM_START_REASON
        assert trial.labels[WARM_START_LABEL] == "true"
        assert trial.completion_time is not None and not trial.runner_handle
    metrics = {m["name"]: m for m in trials[1].observation["metrics"]}
    assert metrics["loss"]["latest"] == metrics["loss"]["min"] == "0.5"
    best = store.best_trial("exp")
    assert best is not None and best.name == trials[0].name  # they may be the best


def test_warm_start_from_another_experiment_skips_points_outside_the_new_space(
    store: Store,
) -> None:
    store.create_experiment("old", document("old"))
    rows = [
        ("old-a", {"lr": "0.1", "layers": "2", "opt": "adam"}, TrialCondition.SUCCEEDED, "0.3"),
        ("old-b", {"lr": "0.9", "layers": "4", "opt": "sgd"}, TrialCondition.SUCCEEDED, "0.7"),
        ("old-c", {"lr": "0.2", "layers": "1", "opt": "sgd"}, TrialCondition.FAILED, "0.1"),
        ("old-d", {"lr": "0.4", "layers": "1", "opt": "sgd"}, TrialCondition.EARLY_STOPPED, "0.6"),
        ("old-e", {"lr": "0.5", "layers": "1", "opt": "sgd"}, TrialCondition.RUNNING, "0.2"),
    ]
    store.create_trials(
        [
            TrialRecord(
                name=name,
                experiment_name="old",
                assignment=assignment,
                condition=condition,
                observation={
                    "metrics": [{"name": "loss", "min": "0.01", "max": "9", "latest": loss}]
                },
            )
            for name, assignment, condition, loss in rows
        ]
    )
    new_space = [  # lr narrowed to [0.001, 0.5]; opt gains a value
        {"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.001", "max": "0.5"}},
        {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "4"}},
        {
            "name": "opt",
            "parameterType": "categorical",
            "feasibleSpace": {"list": ["sgd", "adam", "rmsprop"]},
        },
    ]
    store.create_experiment("new", document("new", new_space))
    results = results_of(store, "old")
    assert [r.source for r in results] == [
        "experiment 'old', trial 'old-a'",
        "experiment 'old', trial 'old-b'",
        "experiment 'old', trial 'old-d'",
    ]
    assert results[0].metrics == {"loss": 0.01}  # the minimize objective's strategy: min
    report = warm_start(store, "new", results)
    assert len(report.added) == 2
    assert report.skipped == [
        (
            "experiment 'old', trial 'old-b'",
            "parameters.lr: '0.9': 0.9 is outside its feasible space (double in [0.001, 0.5])",
        )
    ]
    trials = store.list_trials("new")
    assert [dict(t.assignment)["lr"] for t in trials] == ["0.1", "0.4"]
    assert "experiment 'old', trial 'old-a'" in trials[0].message
    # a parameter the old space lacked: every old trial is skipped, saying which is missing
    store.create_experiment(
        "wider",
        document(
            "wider",
            [
                *new_space,
                {"name": "bs", "parameterType": "int", "feasibleSpace": {"min": "8", "max": "64"}},
            ],
        ),
    )
    report = warm_start(store, "wider", results)
    assert not report.added
    assert all("missing value for parameter(s) bs" in why for _, why in report.skipped)


def test_results_from_rejects_unknown_forms() -> None:
    with pytest.raises(SeedError, match=r"warm_start\[0\]: expected"):
        results_from(["nope"], "loss")
    with pytest.raises(SeedError, match=r"warm_start\[0\]\.metrics\.loss: 'x' is not a number"):
        results_from([({"lr": 1}, {"loss": "x"})], "loss")
    with pytest.raises(SeedError, match="not both"):
        results_from([{"parameters": {}, "value": 1, "metrics": {}}], "loss")
    assert results_from([Result({"lr": 1}, {"loss": 2.0})], "loss")[0].metrics == {"loss": 2.0}
