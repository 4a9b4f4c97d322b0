"""Conformance suite for suggestion algorithms: every algorithm in ``REGISTRY`` on every space.

An algorithm added to ``suggestion.algorithms.REGISTRY`` is enrolled automatically. Each test
checks one clause of the contract in ``suggestion.algorithms.base``: counts, bounds, steps and
plain Python types; distinctness within a batch and against every existing trial; seeded
reproducibility and restart-safety; robustness to failed, pending, NaN and constant results;
both objective directions; settings validation; exhaustion of finite spaces.

Algorithms declare what they cannot search by raising ``UnsupportedSpaceError`` from
``validate`` (grid: continuous doubles; cmaes: fewer than two numeric parameters; hyperband: a
finite space smaller than its first bracket); those combinations are skipped, and every
algorithm must support the "mixed-stepped" space.

Multi-fidelity algorithms (capability ``"resource"``, e.g. hyperband) get every space with a
resource parameter ``epochs`` added and the settings naming it. Staged ones (capability
``"staged"``) may answer :class:`NotReadyError` instead of assignments, but only while a trial
of the history is pending (they wait for a rung to finish); the closed loops then finish a
trial and ask again. The finite-space exhaustion clause does not apply to staged algorithms,
whose schedule ends before the space does (tests/suggestion/test_hyperband.py covers theirs).
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import random

import pytest

import suggestion.algorithms as algorithms_pkg
from suggestion.algorithms import REGISTRY, get_algorithm
from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    InvalidSettingsError,
    NotReadyError,
    SpaceExhaustedError,
    SuggestRequest,
    UnknownAlgorithmError,
    UnsupportedSpaceError,
    parse_settings,
)
from tunery.space import Assignment, Distribution, Parameter, ParameterType, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

D = Distribution

SPACES: dict[str, SearchSpace] = {
    "double-uniform": SearchSpace(
        (Parameter.double("x", -5.0, 10.0), Parameter.double("y", 0.0, 1.0))
    ),
    "double-log": SearchSpace(
        (
            Parameter.double("lr", 1e-5, 1.0, distribution=D.LOG_UNIFORM),
            Parameter.double("wd", 1e-6, 1e-2, distribution=D.LOG_UNIFORM),
        )
    ),
    "double-normal": SearchSpace(
        (
            Parameter.double("a", -1.0, 3.0, distribution=D.NORMAL),
            Parameter.double("b", 0.01, 100.0, distribution=D.LOG_NORMAL),
        )
    ),
    "double-step": SearchSpace(
        (
            Parameter.double("a", 0.0, 1.0, step=0.1),
            Parameter.double("b", -2.0, 2.0, step=0.25, distribution=D.NORMAL),
        )
    ),
    "int": SearchSpace((Parameter.integer("n", 1, 64), Parameter.integer("m", -5, 5, step=2))),
    "int-log-normal": SearchSpace(
        (
            Parameter.integer("n", 1, 1024, distribution=D.LOG_UNIFORM),
            Parameter.integer("m", 0, 100, step=5, distribution=D.NORMAL),
            Parameter.integer("k", 2, 512, step=3, distribution=D.LOG_NORMAL),
        )
    ),
    "categorical": SearchSpace(
        (
            Parameter.categorical("opt", ["sgd", "adam", "rmsprop"]),
            Parameter.categorical("act", ["relu", "tanh"]),
        )
    ),
    "discrete": SearchSpace(
        (
            Parameter.discrete("units", [16, 32, 64, 128]),
            Parameter.discrete("drop", [0.5, 0.1, 0.25]),
        )
    ),
    "mixed": SearchSpace(
        (
            Parameter.double("lr", 1e-4, 0.1, distribution=D.LOG_UNIFORM),
            Parameter.integer("layers", 1, 8),
            Parameter.categorical("opt", ["sgd", "adam"]),
            Parameter.discrete("units", [32, 64, 128]),
            Parameter.double("mom", 0.5, 0.99, step=0.01, distribution=D.NORMAL),
        )
    ),
    "conditional": SearchSpace(
        (
            Parameter.categorical("opt", ["sgd", "adam", "lbfgs"]),
            Parameter.double("mom", 0.0, 0.99).when("opt", "sgd"),
            Parameter.categorical("nesterov", ["yes", "no"]).when("opt", "sgd"),
            Parameter.double("beta1", 0.8, 0.999, distribution=D.LOG_UNIFORM).when("opt", "adam"),
            Parameter.double("lr", 1e-4, 0.1, distribution=D.LOG_UNIFORM),
        )
    ),
    "conditional-stepped": SearchSpace(
        (
            Parameter.integer("depth", 1, 3).when("model", "tree"),
            Parameter.categorical("model", ["tree", "linear"]),
            Parameter.discrete("alpha", [0.1, 1.0, 10.0]).when("model", "linear"),
            Parameter.integer("leaf", 1, 4, step=1).when("depth", 2, 3),
            Parameter.double("lr", 0.1, 1.0, step=0.3),
        )
    ),
    "mixed-stepped": SearchSpace(
        (
            Parameter.double("lr", 0.1, 1.0, step=0.3),
            Parameter.integer("n", 1, 3),
            Parameter.integer("m", 0, 10, step=5),
            Parameter.categorical("opt", ["sgd", "adam"]),
        )
    ),
}
SPACE_IDS = sorted(SPACES)
MIN = Objective(ObjectiveType.MINIMIZE, "loss")
MAX = Objective(ObjectiveType.MAXIMIZE, "accuracy")


RESOURCE = Parameter.integer("epochs", 1, 27)
RESOURCE_SETTINGS = {"resource_name": "epochs", "r_l": "27", "eta": "3"}


# -- helpers ------------------------------------------------------------------------------------


def has(name: str, capability: str) -> bool:
    return capability in get_algorithm(name).capabilities


def space_for(name: str, space: SearchSpace) -> SearchSpace:
    """``space``, with the resource parameter added for multi-fidelity algorithms."""
    return SearchSpace((*space.parameters, RESOURCE)) if has(name, "resource") else space


def settings_for(name: str, **settings: str) -> dict[str, str]:
    """The settings the suite runs ``name`` with: Katib's required ones (pbt), the resource
    settings of multi-fidelity algorithms, then ``settings``."""
    resource = RESOURCE_SETTINGS if has(name, "resource") else {}
    return {**REQUIRED_SETTINGS.get(name, {}), **resource, **settings}


def suggest(algo: Algorithm, req: SuggestRequest) -> list[Assignment] | None:
    """``algo.suggest(req)``; None when a staged algorithm waits for pending trials."""
    try:
        return algo.suggest(req)
    except NotReadyError:
        assert "staged" in type(algo).capabilities, "only staged algorithms may wait"
        assert any(t.is_pending for t in req.trials), "waiting with no trial pending"
        return None


def sample(space: SearchSpace, rng: random.Random) -> Assignment:
    """A feasible assignment drawn independently of the code under test (the parameters it
    makes inactive left out)."""
    out: Assignment = {}
    for p in space:
        if p.type in (ParameterType.DISCRETE, ParameterType.CATEGORICAL):
            out[p.name] = rng.choice(p.values)
            continue
        assert p.low is not None and p.high is not None
        if p.distribution.is_log:
            x = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
        else:
            x = rng.uniform(p.low, p.high)
        out[p.name] = p.snap(x)
    return space.prune(out)


def score(space: SearchSpace, a: Assignment) -> float:
    """A deterministic objective over any space: normalised numbers plus list positions."""
    total = 0.0
    for p in space:
        if p.name not in a:  # inactive
            continue
        v = a[p.name]
        if p.type in (ParameterType.DISCRETE, ParameterType.CATEGORICAL):
            total += p.values.index(v) / len(p.values)
        else:
            assert p.low is not None and p.high is not None
            span = (p.high - p.low) or 1
            total += ((v - p.low) / span - 0.3) ** 2  # type: ignore[operator]
    return total


def history(space: SearchSpace, n: int, seed: int = 0) -> list[TrialResult]:
    """Up to ``n`` distinct trials in every state (mostly succeeded, some pending and failed),
    leaving at least four points of a finite space unused."""
    size = space.grid_size()
    if size is not None:
        n = min(n, size - 4)
    rng = random.Random(seed)
    trials: list[TrialResult] = []
    keys: set[tuple[str, ...]] = set()
    conditions = [
        TrialCondition.SUCCEEDED,
        TrialCondition.SUCCEEDED,
        TrialCondition.SUCCEEDED,
        TrialCondition.EARLY_STOPPED,
        TrialCondition.RUNNING,
        TrialCondition.CREATED,
        TrialCondition.FAILED,
    ]
    attempts = 0
    while len(trials) < n and attempts < 50 * n:
        attempts += 1
        a = sample(space, rng)
        if space.key(a) in keys:
            continue
        keys.add(space.key(a))
        condition = conditions[len(trials) % len(conditions)]
        value = score(space, a) if condition in (conditions[0], conditions[3]) else None
        trials.append(TrialResult(f"t{len(trials)}", a, condition, value))
    return trials


REQUIRED_SETTINGS: dict[str, dict[str, str]] = {
    # Katib requires these for pbt; the suite runs it with a population of 5
    "pbt": {"suggestion_trial_dir": "/ckpt", "n_population": "5", "truncation_threshold": "0.2"},
}


def default_settings(name: str) -> AlgorithmSettings:
    cls = get_algorithm(name)
    return parse_settings(cls.settings_type, settings_for(name), name)


def make(name: str, **settings: str) -> Algorithm:
    cls = get_algorithm(name)
    return cls(parse_settings(cls.settings_type, settings_for(name, **settings), name))


def supported(name: str, space: SearchSpace, objective: Objective = MIN) -> None:
    cls = get_algorithm(name)
    try:
        cls.validate(space, objective, make(name).settings)
    except UnsupportedSpaceError as exc:
        pytest.skip(f"{name} does not search this space: {exc}")


def request(
    space: SearchSpace,
    trials: list[TrialResult],
    count: int,
    objective: Objective = MIN,
    name: str = "exp",
) -> SuggestRequest:
    return SuggestRequest(space, objective, list(trials), count, experiment_name=name)


def assert_valid(space: SearchSpace, out: list[Assignment], count: int) -> None:
    assert len(out) == count
    for a in out:
        assert set(a) == space.active(a), "inactive parameters given or active ones missing"
        for p in space:
            if p.name not in a:
                continue
            v = a[p.name]
            if p.type is ParameterType.INT:
                assert type(v) is int, (p.name, v)
            elif p.type is ParameterType.DOUBLE:
                assert type(v) is float, (p.name, v)
            elif p.type is ParameterType.CATEGORICAL:
                assert type(v) is str, (p.name, v)
            else:
                assert type(v) in (int, float), (p.name, v)
                assert any(v == x and type(v) is type(x) for x in p.values), (p.name, v)
            assert p.contains(v), (p.name, v)
            if p.is_numeric_range:
                assert v == p.snap(v), f"{p.name}={v!r} is not min + k*step"  # type: ignore[arg-type]
                assert p.low <= v <= p.high  # type: ignore[operator]


def assert_distinct(
    algorithm: str, space: SearchSpace, out: list[Assignment], trials: list[TrialResult]
) -> None:
    if "repeats" in get_algorithm(algorithm).capabilities:
        return  # e.g. pbt: an exploiting member takes a better member's values on purpose
    keys = [space.key(a) for a in out]
    assert len(set(keys)) == len(keys), "duplicates within the batch"
    existing = {space.key(t.assignment) for t in trials}
    assert not existing & set(keys), "an assignment repeats an existing trial"


def batch_size(space: SearchSpace, trials: int = 0, wanted: int = 8) -> int:
    size = space.grid_size()
    return wanted if size is None else max(1, min(wanted, size - trials))


@pytest.fixture(params=sorted(REGISTRY))
def algorithm(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=SPACE_IDS)
def space(request: pytest.FixtureRequest, algorithm: str) -> SearchSpace:
    return space_for(algorithm, SPACES[request.param])


# -- registry -----------------------------------------------------------------------------------


def test_registry_keys_match_class_names(algorithm: str) -> None:
    cls = get_algorithm(algorithm)
    assert cls.name == algorithm
    assert issubclass(cls, Algorithm)
    assert issubclass(cls.settings_type, AlgorithmSettings)


def test_every_algorithm_module_is_registered() -> None:
    modules = {m.name for m in pkgutil.iter_modules(algorithms_pkg.__path__)}
    public = {m for m in modules if not m.startswith("_") and m != "base"}
    registered = {target.split(":")[0].rsplit(".", 1)[1] for target in REGISTRY.values()}
    assert public <= registered, f"modules not in REGISTRY: {sorted(public - registered)}"
    for target in REGISTRY.values():
        module, _, cls = target.partition(":")
        assert hasattr(importlib.import_module(module), cls), target


def test_unknown_algorithm_names_the_registered_ones() -> None:
    with pytest.raises(UnknownAlgorithmError, match="unknown algorithm name nope; available"):
        get_algorithm("nope")


def test_every_algorithm_supports_a_mixed_stepped_space(algorithm: str) -> None:
    cls = get_algorithm(algorithm)
    cls.validate(space_for(algorithm, SPACES["mixed-stepped"]), MIN, make(algorithm).settings)


# -- settings -----------------------------------------------------------------------------------


def test_default_settings_are_valid(algorithm: str) -> None:
    cls = get_algorithm(algorithm)
    required = REQUIRED_SETTINGS.get(algorithm)
    if required is not None:  # Katib's required settings: their absence is named
        with pytest.raises(InvalidSettingsError, match="Required params missing: "):
            cls.validate(
                SPACES["mixed-stepped"], MIN, parse_settings(cls.settings_type, {}, algorithm)
            )
        assert default_settings(algorithm).random_state is None
    settings = parse_settings(cls.settings_type, {}, algorithm)
    assert settings == cls.settings_type()
    assert settings.random_state is None


def test_unknown_settings_are_rejected(algorithm: str) -> None:
    cls = get_algorithm(algorithm)
    with pytest.raises(InvalidSettingsError) as info:
        parse_settings(cls.settings_type, {"no_such_setting": "1"}, algorithm)
    assert str(info.value) == f"unknown setting no_such_setting for algorithm {algorithm}"


@pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
def test_bad_random_state_is_rejected(algorithm: str, value: str) -> None:
    cls = get_algorithm(algorithm)
    with pytest.raises(InvalidSettingsError, match="random_state"):
        parse_settings(cls.settings_type, {"random_state": value}, algorithm)


# -- suggestions --------------------------------------------------------------------------------


def test_empty_history_gives_valid_distinct_assignments(
    algorithm: str, space: SearchSpace
) -> None:
    supported(algorithm, space)
    count = batch_size(space)
    out = make(algorithm, random_state="1").suggest(request(space, [], count))
    assert_valid(space, out, count)
    assert_distinct(algorithm, space, out, [])


def test_batch_is_distinct_from_each_other_and_every_trial(
    algorithm: str, space: SearchSpace
) -> None:
    supported(algorithm, space)
    trials = history(space, 25)
    count = batch_size(space, len(trials))
    out = suggest(make(algorithm, random_state="2"), request(space, trials, count))
    if out is None:
        return
    assert_valid(space, out, count)
    assert_distinct(algorithm, space, out, trials)


def test_seeded_output_is_reproducible(algorithm: str, space: SearchSpace) -> None:
    supported(algorithm, space)
    trials = history(space, 15, seed=3)
    req = request(space, trials, batch_size(space, len(trials), 3))
    first = make(algorithm, random_state="11").suggest(req)
    assert make(algorithm, random_state="11").suggest(req) == first
    assert make(algorithm, random_state="11").suggest(req) == first


def test_unset_seed_derives_from_the_experiment_name(algorithm: str) -> None:
    space = space_for(algorithm, SPACES["mixed-stepped"])
    trials = history(space, 4)
    a = make(algorithm).suggest(request(space, trials, 3, name="exp-a"))
    assert make(algorithm).suggest(request(space, trials, 3, name="exp-a")) == a


def test_a_fresh_instance_continues_exactly_like_a_warm_one(
    algorithm: str, space: SearchSpace
) -> None:
    """Restart-safety: the instance's caches never change its answers."""
    supported(algorithm, space)
    size = space.grid_size()
    steps = 18 if size is None else min(18, size - 3)
    warm = make(algorithm, random_state="5")
    trials: list[TrialResult] = []
    for i in range(steps):
        [a] = warm.suggest(request(space, trials, 1))
        trials.append(TrialResult(f"t{i}", a, TrialCondition.SUCCEEDED, score(space, a)))
    final = request(space, trials, batch_size(space, len(trials), 3))
    assert make(algorithm, random_state="5").suggest(final) == warm.suggest(final)


def test_failed_pending_and_nan_trials_are_tolerated(algorithm: str, space: SearchSpace) -> None:
    supported(algorithm, space)
    base = history(space, 24, seed=4)
    odd_values = [math.nan, math.inf, -math.inf, None]
    trials = [
        TrialResult(t.name, t.assignment, TrialCondition.SUCCEEDED, odd_values[i % 4])
        if i % 3 == 0
        else t
        for i, t in enumerate(base)
    ]
    count = batch_size(space, len(trials), 4)
    out = suggest(make(algorithm, random_state="6"), request(space, trials, count))
    if out is None:
        return
    assert_valid(space, out, count)
    assert_distinct(algorithm, space, out, trials)


def test_only_pending_trials(algorithm: str, space: SearchSpace) -> None:
    supported(algorithm, space)
    trials = [
        TrialResult(t.name, t.assignment, TrialCondition.RUNNING) for t in history(space, 12)
    ]
    count = batch_size(space, len(trials), 4)
    out = make(algorithm, random_state="6").suggest(request(space, trials, count))
    assert_valid(space, out, count)
    assert_distinct(algorithm, space, out, trials)


def test_constant_objective(algorithm: str, space: SearchSpace) -> None:
    supported(algorithm, space)
    size = space.grid_size()
    n = 40 if size is None else min(40, size - 4)
    algo = make(algorithm, random_state="7")
    trials: list[TrialResult] = []
    for i in range(n):
        [a] = algo.suggest(request(space, trials, 1))
        trials.append(TrialResult(f"t{i}", a, TrialCondition.SUCCEEDED, 1.0))
    count = batch_size(space, len(trials), 4)
    out = algo.suggest(request(space, trials, count))
    assert_valid(space, out, count)
    assert_distinct(algorithm, space, out, trials)


@pytest.mark.parametrize("objective", [MIN, MAX], ids=["minimize", "maximize"])
def test_closed_loop_with_parallel_trials(
    algorithm: str, space: SearchSpace, objective: Objective
) -> None:
    """30 trials, three in flight at a time, as a controller with parallelism 3 runs them."""
    supported(algorithm, space, objective)
    size = space.grid_size()
    total = 30 if size is None else min(30, size)
    algo = make(algorithm, random_state="8")
    trials: list[TrialResult] = []
    running: list[int] = []
    while len(trials) < total:
        count = min(3 - len(running), total - len(trials))
        out = suggest(algo, request(space, trials, count, objective))
        if out is None:  # a staged algorithm waits: finish the oldest running trial
            out = []
            count = 0
        assert_valid(space, out, count)
        assert_distinct(algorithm, space, out, trials)
        for a in out:
            running.append(len(trials))
            trials.append(TrialResult(f"t{len(trials)}", a, TrialCondition.RUNNING))
        done = running.pop(0)
        t = trials[done]
        trials[done] = TrialResult(
            t.name, t.assignment, TrialCondition.SUCCEEDED, score(space, t.assignment)
        )
    if "repeats" not in get_algorithm(algorithm).capabilities:
        assert len({space.key(t.assignment) for t in trials}) == total


# -- finite spaces ------------------------------------------------------------------------------

FINITE = [name for name in SPACE_IDS if (SPACES[name].grid_size() or math.inf) <= 1000]


@pytest.mark.parametrize("space_id", FINITE)
def test_a_finite_space_is_covered_then_exhausted(algorithm: str, space_id: str) -> None:
    if has(algorithm, "staged"):
        pytest.skip(f"{algorithm}'s schedule ends before a finite space does")
    space = space_for(algorithm, SPACES[space_id])
    supported(algorithm, space)
    if "repeats" in get_algorithm(algorithm).capabilities:
        pytest.skip(f"{algorithm} repeats assignments on purpose; it never exhausts a space")
    size = space.grid_size()
    assert size is not None
    every = [dict(a) for a in space.grid()]
    keep = 3 if size > 3 else 1
    rng = random.Random(9)
    rng.shuffle(every)
    states = [TrialCondition.SUCCEEDED, TrialCondition.FAILED, TrialCondition.RUNNING]
    trials = [
        TrialResult(f"t{i}", a, states[i % 3], 1.0 if states[i % 3] is states[0] else None)
        for i, a in enumerate(every[keep:])
    ]
    algo = make(algorithm, random_state="9")
    with pytest.raises(SpaceExhaustedError, match="exhausted"):
        algo.suggest(request(space, trials, keep + 1))
    out = algo.suggest(request(space, trials, keep))
    assert sorted(space.key(a) for a in out) == sorted(space.key(a) for a in every[:keep])


def test_finite_only_algorithms_declare_it(algorithm: str) -> None:
    cls = get_algorithm(algorithm)
    continuous = space_for(algorithm, SPACES["double-uniform"])
    settings = make(algorithm).settings
    if "finite" in cls.capabilities:
        with pytest.raises(UnsupportedSpaceError):
            cls.validate(continuous, MIN, settings)
    else:
        cls.validate(continuous, MIN, settings)
