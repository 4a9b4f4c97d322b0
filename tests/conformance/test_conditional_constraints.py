"""Conformance for tunery's search extensions, parametrised over ``REGISTRY``: conditional
parameters (issue 20 point 2) and constraints (point 3).

Every algorithm either refuses a conditional space at validation with a message naming the
conditional parameters, or proposes assignments holding exactly the active parameters; the
modelling algorithms (tpe, bayesianoptimization) learn a child only from the trials where it
was active, and steer away from infeasible regions when trials report constraints.
"""

from __future__ import annotations

import random
import statistics

import numpy as np
import pytest

from suggestion.algorithms import REGISTRY, get_algorithm
from suggestion.algorithms._parzen import feasibility_split
from suggestion.algorithms.base import SuggestRequest, UnsupportedSpaceError, parse_settings
from tunery.space import Parameter, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

SPACE = SearchSpace(
    (
        Parameter.categorical("opt", ["sgd", "adam"]),
        Parameter.double("momentum", 0.0, 1.0).when("opt", "sgd"),
        Parameter.double("beta", 0.0, 1.0).when("opt", "adam"),
        Parameter.double("lr", 0.0, 1.0),
    )
)
MIN = Objective(ObjectiveType.MINIMIZE, "loss")
MODELLING = ("tpe", "bayesianoptimization")


def make(name: str, **settings: str):
    cls = get_algorithm(name)
    return cls(parse_settings(cls.settings_type, settings, name))


def draw(rng: random.Random) -> dict:
    opt = rng.choice(["sgd", "adam"])
    a: dict = {"opt": opt, "lr": rng.random()}
    a["momentum" if opt == "sgd" else "beta"] = rng.random()
    return a


def loss(a: dict) -> float:
    """sgd with momentum near 0.8 is best; adam is mediocre whatever its beta."""
    if a["opt"] == "sgd":
        return abs(a["momentum"] - 0.8) + 0.1 * a["lr"]
    return 0.6 + 0.1 * a["lr"]


def history(n: int, seed: int = 0) -> list[TrialResult]:
    rng = random.Random(seed)
    return [
        TrialResult(f"t{i}", a, TrialCondition.SUCCEEDED, loss(a))
        for i, a in enumerate(draw(rng) for _ in range(n))
    ]


@pytest.fixture(params=sorted(REGISTRY))
def algorithm(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_each_algorithm_honours_conditions_or_refuses_them(algorithm: str) -> None:
    cls = get_algorithm(algorithm)
    space = SPACE
    if algorithm == "grid":
        space = SearchSpace(
            (
                Parameter.categorical("opt", ["sgd", "adam"]),
                Parameter.double("momentum", 0.0, 1.0, step=0.5).when("opt", "sgd"),
                Parameter.integer("lr", 1, 2),
            )
        )
    try:
        cls.validate(space, MIN, cls.settings_type())
    except UnsupportedSpaceError as exc:
        assert "conditional" in str(exc) and "momentum" in str(exc)
        return
    trials = [] if algorithm == "grid" else history(12)
    out = make(algorithm, random_state="1").suggest(
        SuggestRequest(space, MIN, trials, 4, experiment_name="c")
    )
    assert len(out) == 4
    for a in out:
        assert space.contains(a), a
        assert ("momentum" in a) == (a["opt"] == "sgd")


def test_only_the_fixed_dimension_and_population_algorithms_refuse_conditions() -> None:
    """The refusals are deliberate: the algorithms that refuse a conditional space (for being
    conditional, not for a continuous double) are exactly these."""
    refused = set()
    for name in REGISTRY:
        cls = get_algorithm(name)
        try:
            cls.validate(SPACE, MIN, cls.settings_type())
        except UnsupportedSpaceError as exc:
            if "conditional" in str(exc):
                refused.add(name)
    assert refused == {"cmaes", "hyperband", "multivariate-tpe", "nsga2", "pbt"}


def test_grid_enumerates_only_the_active_combinations() -> None:
    space = SearchSpace(
        (
            Parameter.categorical("opt", ["sgd", "adam", "lbfgs"]),
            Parameter.discrete("momentum", [0.0, 0.5, 0.9]).when("opt", "sgd"),
            Parameter.categorical("nesterov", ["y", "n"]).when("momentum", 0.5, 0.9),
            Parameter.integer("layers", 1, 2),
        )
    )
    # sgd: momentum 0 (2 layers) + momentum 0.5/0.9 x nesterov (2 x 2 x 2); adam, lbfgs: 2 each
    assert space.grid_size() == 2 + 8 + 2 + 2
    grid = make("grid")
    out = grid.suggest(SuggestRequest(space, MIN, [], 14, experiment_name="g"))
    assert len({space.key(a) for a in out}) == 14
    assert all(space.contains(a) for a in out)
    assert {a["opt"] for a in out if "momentum" not in a} == {"adam", "lbfgs"}
    with pytest.raises(Exception, match="exhausted"):
        trials = [
            TrialResult(f"t{i}", a, TrialCondition.SUCCEEDED, 0.0) for i, a in enumerate(out)
        ]
        grid.suggest(SuggestRequest(space, MIN, trials, 1, experiment_name="g"))


@pytest.mark.parametrize("name", MODELLING)
def test_a_child_is_learned_from_the_trials_where_it_was_active(name: str) -> None:
    """After 40 trials, proposals pick sgd and a momentum near 0.8 (the optimum), which a model
    that mixed in the adam trials' absent momentum could not locate."""
    momenta = []
    for seed in range(6):
        algorithm = make(name, random_state=str(seed))
        trials = history(40, seed)
        (a,) = algorithm.suggest(SuggestRequest(SPACE, MIN, trials, 1, experiment_name="m"))
        assert SPACE.contains(a)
        if a["opt"] == "sgd":
            momenta.append(a["momentum"])
    assert len(momenta) >= 4
    assert statistics.median(abs(m - 0.8) for m in momenta) < 0.15, momenta


def test_feasibility_split_ranks_feasible_trials_first() -> None:
    losses = np.array([0.0, 5.0, 1.0, -3.0, 2.0])
    violations = np.array([0.0, 0.0, 0.5, 2.0, np.inf])
    good, bad = feasibility_split(losses, violations, 3)
    # feasible by loss (0, 1), then the least violation (2); -3 is infeasible however low
    assert list(good) == [0, 1, 2] and list(bad) == [3, 4]


def constrained_history(n: int, seed: int) -> list[TrialResult]:
    """Minimise x; feasible only for x >= 0.6 (constraint 0.6 - x <= 0)."""
    rng = np.random.default_rng(seed)
    space_trials = []
    for i in range(n):
        x = float(rng.random())
        a = {"x": x, "y": float(rng.random())}
        space_trials.append(
            TrialResult(f"t{i}", a, TrialCondition.SUCCEEDED, x, constraint_values=(0.6 - x,))
        )
    return space_trials


@pytest.mark.parametrize("name", MODELLING)
def test_constraints_steer_sampling_to_the_feasible_optimum(name: str) -> None:
    space = SearchSpace((Parameter.double("x", 0.0, 1.0), Parameter.double("y", 0.0, 1.0)))
    constrained = Objective(ObjectiveType.MINIMIZE, "x", constraints=("c",))
    xs, plain = [], []
    for seed in range(6):
        trials = constrained_history(30, seed)
        request = SuggestRequest(space, constrained, trials, 1, experiment_name="k")
        xs.append(make(name, random_state=str(seed)).suggest(request)[0]["x"])
        unconstrained = [TrialResult(t.name, t.assignment, t.condition, t.value) for t in trials]
        request = SuggestRequest(space, MIN, unconstrained, 1, experiment_name="k")
        plain.append(make(name, random_state=str(seed)).suggest(request)[0]["x"])
    # with the constraint the search goes to the boundary x = 0.6, without it to x = 0
    assert statistics.median(abs(x - 0.6) for x in xs) < 0.15, xs
    assert statistics.median(plain) < 0.3, plain
