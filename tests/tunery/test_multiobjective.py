"""Multi-objective in the kernel: ``spec.objective.objectives`` (defaults, validation, the kernel
Objective), the ``tunery.io/objectives`` setting codec, and ``tunery.pareto``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tests.tunery.test_experiment import load, minimal
from tunery.experiment import ExperimentError
from tunery.pareto import (
    crowding_distance,
    dominates,
    hypervolume,
    hypervolume_contributions,
    nondominated_mask,
    nondominated_ranks,
)
from tunery.trials import (
    ObjectivesSettingError,
    ObjectiveTerm,
    ObjectiveType,
    decode_objectives_setting,
    encode_objectives_setting,
)

TWO = [{"name": "loss", "type": "minimize"}, {"name": "acc", "type": "maximize", "goal": 0.9}]


def mo(**objective: Any) -> dict[str, Any]:
    return minimal(objective=objective)


def problems(doc: dict[str, Any]) -> str:
    with pytest.raises(ExperimentError) as info:
        load(doc)
    return str(info.value)


def test_objectives_default_katibs_fields_and_the_additional_metrics() -> None:
    e = load(mo(objectives=TWO, additionalMetricNames=["latency"]))
    o = e.spec.objective
    assert (o.objective_metric_name, o.type) == ("loss", ObjectiveType.MINIMIZE)
    assert o.additional_metric_names == ("latency", "acc")
    strategies = {s.name: s.value.value for s in o.metric_strategies}
    assert strategies == {"loss": "min", "latency": "min", "acc": "max"}  # acc: its own way
    kernel = e.objective()
    assert kernel.is_multi
    assert kernel.terms == (
        ObjectiveTerm("loss", ObjectiveType.MINIMIZE),
        ObjectiveTerm("acc", ObjectiveType.MAXIMIZE, 0.9),
    )
    assert kernel.losses((0.5, 0.8)) == (0.5, -0.8)
    assert load(e.to_document()) == e  # the defaulted document round-trips


def test_a_plain_katib_objective_is_unchanged() -> None:
    e = load(minimal())
    assert e.spec.objective.objectives is None
    assert not e.objective().is_multi
    assert "objectives" not in e.to_document()["spec"]["objective"]


def test_katibs_fields_may_repeat_the_first_objective() -> None:
    e = load(mo(objectives=TWO, type="minimize", objectiveMetricName="loss"))
    assert e.objective().objective_metric_names == ("loss", "acc")


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        ({"objectives": TWO[:1]}, "spec.objective.objectives: must list at least two"),
        (
            {"objectives": TWO, "objectiveMetricName": "acc"},
            'spec.objective.objectiveMetricName: "acc" differs from objectives[0] ("loss")',
        ),
        (
            {"objectives": TWO, "type": "maximize"},
            'spec.objective.type: "maximize" differs from objectives[0] ("minimize")',
        ),
        (
            {"objectives": [*TWO, {"name": "loss", "type": "maximize"}]},
            'spec.objective.objectives[2].name: "loss" is listed twice (also at objectives[0])',
        ),
        (
            {"objectives": [TWO[0], {"name": "acc", "type": "maximise"}]},
            'spec.objective.objectives[1].type: "maximise" is not a valid objective type',
        ),
        (
            {"objectives": [TWO[0], {"name": "acc", "type": "maximize", "weight": 2}]},
            "spec.objective.objectives[1].weight",
        ),
        (
            {"objectives": TWO, "metricStrategies": [{"name": "acc", "value": "min"}]},
            'metric strategy min of "acc" works against its direction (maximize)',
        ),
    ],
)
def test_bad_objectives_are_named(objective: dict[str, Any], expected: str) -> None:
    assert expected in problems(mo(**objective))


def test_a_single_objective_algorithm_is_refused_locally() -> None:
    from controller.settings_check import settings_problems
    from tunery.experiment import load_experiment

    doc = minimal(objective={"objectives": TWO}, algorithm={"algorithmName": "tpe"})
    found = settings_problems(load_experiment(doc))
    assert any(
        p.path == "spec.algorithm.algorithmName" and "multi-objective algorithm" in p.message
        for p in found
    ), found
    doc["spec"]["algorithm"] = {"algorithmName": "nsga2"}
    assert settings_problems(load_experiment(doc)) == []


def test_the_objectives_setting_round_trips_and_rejects_garbage() -> None:
    terms = (
        ObjectiveTerm("acc", ObjectiveType.MAXIMIZE, 0.9),
        ObjectiveTerm("ms", ObjectiveType.MINIMIZE),
    )
    assert decode_objectives_setting(encode_objectives_setting(terms)) == terms
    for bad, message in [
        ("nope", "not JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"name": "a"}]', "type must be minimize or maximize"),
        ('[{"name": "a", "type": "minimize", "goal": "x"}]', "goal must be a number"),
        ('[{"name": "a", "type": "minimize"}, {"name": "a", "type": "maximize"}]', "twice"),
    ]:
        with pytest.raises(ObjectivesSettingError, match=message):
            decode_objectives_setting(bad)


def test_goals_per_objective() -> None:
    kernel = load(
        mo(objectives=[{"name": "loss", "type": "minimize", "goal": 0.1}, TWO[1]])
    ).objective()
    assert kernel.goals_reached((0.1, 0.95))
    assert not kernel.goals_reached((0.1, 0.85))  # every goal, in one trial
    assert not kernel.goals_reached(None)
    no_goal = load(mo(objectives=[TWO[0], {"name": "acc", "type": "maximize"}])).objective()
    assert not no_goal.goals_reached((0.0, 1.0))


# -- tunery.pareto ----------------------------------------------------------------------------


def test_dominance_and_fronts() -> None:
    y = np.array([[1, 5], [2, 2], [3, 3], [5, 1], [2, 2], [4, 4]])
    assert dominates([2, 2], [3, 3]) and not dominates([2, 2], [2, 2])
    assert nondominated_mask(y).tolist() == [True, True, False, True, True, False]
    assert nondominated_ranks(y).tolist() == [0, 0, 1, 0, 0, 2]


def test_hypervolume_exact_values() -> None:
    assert hypervolume([[1, 2], [2, 1]], [3, 3]) == pytest.approx(3.0)
    assert hypervolume([[1, 2], [2, 1], [2.5, 2.5]], [3, 3]) == pytest.approx(3.0)
    assert hypervolume([[4, 0]], [3, 3]) == 0.0  # outside the reference box
    cube = [[0, 0, 0]]
    assert hypervolume(cube, [1, 2, 3]) == pytest.approx(6.0)
    two = [[0, 1, 1], [1, 0, 0]]
    assert hypervolume(two, [2, 2, 2]) == pytest.approx(2 + 4 - 1)
    rng = np.random.default_rng(0)  # 3-D against Monte Carlo
    pts = rng.random((12, 3))
    samples = rng.random((200_000, 3))
    dominated = (pts[None, :, :] <= samples[:, None, :]).all(axis=2).any(axis=1)
    assert hypervolume(pts, [1, 1, 1]) == pytest.approx(dominated.mean(), abs=5e-3)


def test_contributions_and_crowding() -> None:
    y = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    contrib = hypervolume_contributions(y, [1.1, 1.1])
    assert contrib[1] == pytest.approx(0.25)
    assert contrib[0] == pytest.approx(0.5 * 0.1) and contrib[2] == pytest.approx(0.1 * 0.5)
    crowd = crowding_distance(y)
    assert math.isinf(crowd[0]) and math.isinf(crowd[2]) and crowd[1] == pytest.approx(2.0)
