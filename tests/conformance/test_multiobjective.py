"""Multi-objective conformance: every algorithm in ``REGISTRY`` either searches several
objectives (capability ``multi-objective``) or refuses such an experiment clearly at validation
(``Algorithm.check_objective``). Those that search them are driven in a closed loop on a
bi-objective problem with pending, failed and partially-reported trials, and must give valid,
distinct, reproducible assignments and improve on their own startup trials.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from suggestion.algorithms import REGISTRY, get_algorithm
from suggestion.algorithms.base import SuggestRequest, UnsupportedSpaceError, parse_settings
from tunery.pareto import hypervolume
from tunery.space import Parameter, SearchSpace
from tunery.trials import Objective, ObjectiveTerm, ObjectiveType, TrialCondition, TrialResult

SPACE = SearchSpace(
    (
        Parameter.double("x", 0.0, 1.0),
        Parameter.double("y", 0.0, 1.0),
        Parameter.integer("k", 0, 4),
        Parameter.categorical("c", ["a", "b"]),
    )
)
# loss minimised, accuracy maximised: a direction per objective
OBJECTIVE = Objective(
    ObjectiveType.MINIMIZE,
    "loss",
    additional_metric_names=("accuracy",),
    extra_objectives=(ObjectiveTerm("accuracy", ObjectiveType.MAXIMIZE),),
)
MULTI = sorted(name for name in REGISTRY if "multi-objective" in get_algorithm(name).capabilities)


def evaluate(a: dict) -> tuple[float, float]:
    g = 1 + 4 * (a["y"] + a["k"] / 4 + (a["c"] == "b")) / 3
    f1 = a["x"]
    f2 = g * (1 - math.sqrt(f1 / g))
    return f1, -f2  # accuracy = -f2, maximised


def trial(i: int, a: dict, condition: TrialCondition = TrialCondition.SUCCEEDED) -> TrialResult:
    if condition is not TrialCondition.SUCCEEDED:
        return TrialResult(f"t{i}", a, condition)
    v = evaluate(a)
    return TrialResult(f"t{i}", a, condition, v[0], v)


def make(name: str, seed: int = 1):
    cls = get_algorithm(name)
    return cls(parse_settings(cls.settings_type, {"random_state": str(seed)}, name))


def test_there_are_three_multi_objective_algorithms() -> None:
    assert set(MULTI) >= {"nsga2", "motpe", "parego"}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_single_objective_algorithms_refuse_several_objectives(name: str) -> None:
    cls = get_algorithm(name)
    if name in MULTI:
        cls.check_objective(OBJECTIVE)  # no error
        return
    with pytest.raises(UnsupportedSpaceError, match=r"loss, accuracy.*multi-objective"):
        cls.check_objective(OBJECTIVE)
    cls.check_objective(Objective(ObjectiveType.MINIMIZE, "loss"))  # one objective: fine


def closed_loop(name: str, budget: int, seed: int = 1) -> list[TrialResult]:
    algo = make(name, seed)
    trials: list[TrialResult] = []
    rng = random.Random(seed)
    while len(trials) < budget:
        out = algo.suggest(SuggestRequest(SPACE, OBJECTIVE, list(trials), 2, "mo"))
        assert len(out) == 2
        keys = {SPACE.key(t.assignment) for t in trials}
        assert len({SPACE.key(a) for a in out} | keys) == len(keys) + 2
        for a in out:
            assert SPACE.contains(a)
            roll = rng.random()
            if roll < 0.05:
                trials.append(trial(len(trials), a, TrialCondition.FAILED))
            elif roll < 0.1:  # the first objective only: must not break the algorithm
                v = evaluate(a)
                trials.append(TrialResult(f"t{len(trials)}", a, TrialCondition.SUCCEEDED, v[0]))
            else:
                trials.append(trial(len(trials), a))
    return trials


def front_hv(trials: list[TrialResult]) -> float:
    y = np.array([OBJECTIVE.losses(t.values) for t in trials if t.values is not None])
    return hypervolume(y, (1.1, 6.0))


@pytest.mark.parametrize("name", MULTI)
def test_closed_loop_improves_on_random_startup(name: str) -> None:
    budget = 40 if name == "parego" else 80
    seeds = (1, 2) if name == "parego" else (1, 2, 3)
    ours = np.median([front_hv(closed_loop(name, budget, s)) for s in seeds])
    # random search ignores the objectives but runs the same loop (values still recorded)
    theirs = np.median([front_hv(closed_loop("random", budget, s)) for s in seeds])
    assert ours > theirs


@pytest.mark.parametrize("name", MULTI)
def test_reproducible_and_restart_safe(name: str) -> None:
    trials = closed_loop(name, 24)
    a = make(name).suggest(SuggestRequest(SPACE, OBJECTIVE, trials, 3, "mo"))
    b = make(name).suggest(SuggestRequest(SPACE, OBJECTIVE, trials, 3, "mo"))
    assert a == b


@pytest.mark.parametrize("name", MULTI)
def test_pending_trials_are_never_repeated(name: str) -> None:
    trials = closed_loop(name, 20)
    trials += [
        trial(100 + i, a, TrialCondition.RUNNING)
        for i, a in enumerate(
            make(name).suggest(SuggestRequest(SPACE, OBJECTIVE, trials, 4, "mo"))
        )
    ]
    out = make(name).suggest(SuggestRequest(SPACE, OBJECTIVE, trials, 4, "mo"))
    keys = {SPACE.key(t.assignment) for t in trials}
    assert not keys & {SPACE.key(a) for a in out}
