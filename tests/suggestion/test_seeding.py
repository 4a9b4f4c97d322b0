"""Startup-phase suggestions are a function of (seed, trial index) only: however the trials of
an experiment running in parallel are batched into requests (which varies with timing), trial
``i`` of the startup phase gets the same assignment (issue 15, defect 7)."""

from __future__ import annotations

import pytest

from suggestion.algorithms import get_algorithm
from suggestion.algorithms.base import SuggestRequest, parse_settings
from tunery.space import Assignment, Parameter, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

SPACE = SearchSpace(
    (
        Parameter.double("x", -5.0, 10.0),
        Parameter.integer("n", 1, 64),
        Parameter.categorical("opt", ("sgd", "adam", "rmsprop")),
    )
)
MIN = Objective(ObjectiveType.MINIMIZE, "loss")


def _startup(name: str, batches: list[int], seed: str = "7") -> list[Assignment]:
    """Assignments of ``sum(batches)`` trials asked for in ``batches``; earlier ones run on."""
    cls = get_algorithm(name)
    algo = cls(parse_settings(cls.settings_type, {"random_state": seed}, name))
    trials: list[TrialResult] = []
    for count in batches:
        request = SuggestRequest(SPACE, MIN, list(trials), count, experiment_name="e")
        for a in algo.suggest(request):
            trials.append(TrialResult(f"t{len(trials)}", a, TrialCondition.RUNNING))
    return [t.assignment for t in trials]


@pytest.mark.parametrize(
    "name", ["random", "tpe", "multivariate-tpe", "bayesianoptimization", "sobol"]
)
def test_startup_suggestions_do_not_depend_on_batching(name: str) -> None:
    one_by_one = _startup(name, [1] * 6)
    assert _startup(name, [6]) == one_by_one
    assert _startup(name, [3, 1, 2]) == one_by_one
    assert _startup(name, [2, 2, 2]) == one_by_one
    assert _startup(name, [6], seed="8") != one_by_one  # and they do depend on the seed
