"""suggestion.algorithms._encoding: the unit cube encodes priors, steps and lists exactly."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from suggestion.algorithms._distinct import fill_distinct
from suggestion.algorithms._encoding import Dim, SpaceEncoding
from suggestion.algorithms._history import TrialCache
from suggestion.algorithms.base import SpaceExhaustedError, SuggestRequest
from tunery.space import Distribution, Parameter, ParamValue, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

D = Distribution


def draws(param: Parameter, n: int = 20000, seed: int = 0) -> list[ParamValue]:
    dim = Dim.of(param)
    return [dim.decode(float(u)) for u in np.random.default_rng(seed).random(n)]


def floats(values: list[ParamValue]) -> list[float]:
    return [float(v) for v in values]  # type: ignore[arg-type]


def test_uniform_double_is_uniform() -> None:
    xs = floats(draws(Parameter.double("x", -2.0, 6.0)))
    assert all(-2.0 <= x <= 6.0 for x in xs)
    assert statistics.fmean(xs) == pytest.approx(2.0, abs=0.1)
    assert statistics.pstdev(xs) == pytest.approx(8 / math.sqrt(12), rel=0.03)


def test_log_uniform_is_uniform_in_log_space() -> None:
    xs = floats(draws(Parameter.double("lr", 1e-5, 1.0, distribution=D.LOG_UNIFORM)))
    assert min(xs) >= 1e-5 and max(xs) <= 1.0
    assert statistics.fmean(math.log10(x) for x in xs) == pytest.approx(-2.5, abs=0.05)
    assert sum(x < 1e-3 for x in xs) / len(xs) == pytest.approx(0.4, abs=0.02)


def test_normal_is_truncated_normal_with_katib_mu_and_sigma() -> None:
    xs = floats(draws(Parameter.double("a", -1.0, 5.0, distribution=D.NORMAL)))
    assert min(xs) >= -1.0 and max(xs) <= 5.0
    assert statistics.fmean(xs) == pytest.approx(2.0, abs=0.03)
    # sigma = (max - min) / 6 = 1, truncated at +-3 sigma: std 0.9866
    assert statistics.pstdev(xs) == pytest.approx(0.9866, rel=0.03)
    within_one = sum(1.0 <= x <= 3.0 for x in xs) / len(xs)
    assert within_one == pytest.approx(0.6827 / 0.9973, abs=0.02)


def test_log_normal_is_normal_in_log_space() -> None:
    xs = floats(draws(Parameter.double("b", 0.01, 100.0, distribution=D.LOG_NORMAL)))
    logs = [math.log(x) for x in xs]
    assert min(xs) >= 0.01 and max(xs) <= 100.0
    assert statistics.fmean(logs) == pytest.approx(0.0, abs=0.05)
    assert statistics.pstdev(logs) == pytest.approx(0.9866 * 2 * math.log(100) / 6, rel=0.03)


def test_ints_are_ints_with_equal_mass_per_value() -> None:
    xs = draws(Parameter.integer("n", 1, 4))
    assert all(type(x) is int for x in xs)
    counts = [xs.count(v) / len(xs) for v in (1, 2, 3, 4)]
    assert counts == pytest.approx([0.25] * 4, abs=0.015)


def test_steps_are_exact_multiples_and_never_outside() -> None:
    assert set(draws(Parameter.double("a", 0.1, 1.0, step=0.3))) == {0.1, 0.4, 0.7, 1.0}
    assert set(draws(Parameter.integer("m", -5, 6, step=4))) == {-5, -1, 3}  # 7 is outside
    r = draws(Parameter.integer("k", 2, 512, step=3, distribution=D.LOG_NORMAL), 5000)
    assert all(type(x) is int and (x - 2) % 3 == 0 and 2 <= x <= 512 for x in r)


def test_lists_decode_to_their_own_values() -> None:
    d = Dim.of(Parameter.discrete("units", [64, 16, 0.5]))
    assert d.choices == (0.5, 16, 64)  # discrete: ascending, the coordinate is ordinal
    assert [d.decode(u) for u in (0.0, 0.5, 0.99, 1.0)] == [0.5, 16, 64, 64]
    c = Dim.of(Parameter.categorical("opt", ["sgd", "adam"]))
    assert [c.decode(u) for u in (0.1, 0.9)] == ["sgd", "adam"]
    assert c.encode("adam") == 0.75
    assert math.isnan(c.encode("nope"))


@pytest.mark.parametrize(
    "param",
    [
        Parameter.double("a", -3.0, 7.0, distribution=D.NORMAL),
        Parameter.double("a", 1e-3, 10.0, distribution=D.LOG_NORMAL),
        Parameter.double("a", 1e-3, 10.0, step=0.5, distribution=D.LOG_UNIFORM),
        Parameter.integer("n", 1, 100, distribution=D.LOG_UNIFORM),
        Parameter.integer("n", 7, 7),
    ],
)
def test_encode_inverts_decode(param: Parameter) -> None:
    dim = Dim.of(param)
    for u in np.random.default_rng(1).random(200):
        x = dim.decode(float(u))
        if dim.is_stepped:
            assert dim.decode(dim.encode(x)) == x
        else:
            assert dim.decode(dim.encode(x)) == pytest.approx(x, rel=1e-9)
        assert dim.canonical(x) == x


def test_vectorised_and_scalar_paths_agree() -> None:
    dim = Dim.of(Parameter.double("a", 1e-3, 10.0, distribution=D.LOG_NORMAL))
    us = np.random.default_rng(2).random(100)
    xs = dim.from_unit(us)
    assert [dim.decode(float(u)) for u in us] == pytest.approx(list(xs), rel=1e-12)
    assert list(dim.to_unit(xs)) == pytest.approx([dim.encode(float(x)) for x in xs], abs=1e-12)


def test_cells_of_a_uniform_int_partition_the_unit_interval() -> None:
    dim = Dim.of(Parameter.integer("n", 0, 4))
    lo, hi = dim.cell_bounds(np.array([0.0, 0.19, 0.21, 0.5, 0.99]))
    assert list(lo) == pytest.approx([0.0, 0.0, 0.2, 0.4, 0.8])
    assert list(hi) == pytest.approx([0.2, 0.2, 0.4, 0.6, 1.0])


def test_foreign_values_encode_to_nan() -> None:
    enc = SpaceEncoding(SearchSpace((Parameter.double("x", 0, 1), Parameter.integer("n", 1, 3))))
    u = enc.encode({"x": "text", "n": 2})
    assert math.isnan(u[0]) and u[1] == 0.5
    assert math.isnan(enc.encode({"n": 2})[0])


SPACE = SearchSpace((Parameter.integer("n", 1, 3), Parameter.categorical("c", ["a", "b"])))
MIN = Objective(ObjectiveType.MINIMIZE, "loss")


def trial(
    name: str,
    n: int,
    c: str,
    condition: TrialCondition = TrialCondition.SUCCEEDED,
    value: float | None = 1.0,
) -> TrialResult:
    return TrialResult(name, {"n": n, "c": c}, condition, value)


def test_fill_distinct_finishes_a_small_space_then_says_it_is_exhausted() -> None:
    enc = SpaceEncoding(SPACE)
    everything = {enc.key({"n": n, "c": c}) for n in (1, 2, 3) for c in "ab"}
    seen = everything - {enc.key({"n": 2, "c": "b"})}
    rng = np.random.default_rng(0)
    assert fill_distinct(enc, 1, seen, rng) == [{"n": 2, "c": "b"}]
    with pytest.raises(SpaceExhaustedError, match="6 distinct assignments, 5 are already used"):
        fill_distinct(enc, 2, seen, rng)


def test_trial_cache_gives_the_history_of_a_fresh_cache() -> None:
    trials = [
        trial("a", 1, "a", value=3.0),
        trial("b", 2, "a", TrialCondition.RUNNING, None),
        trial("c", 3, "b", value=math.nan),
        trial("d", 1, "b", value=-1.0),
        trial("e", 2, "b", TrialCondition.FAILED, None),
    ]
    cache = TrialCache(SpaceEncoding(SPACE))
    for end in range(1, len(trials) + 1):
        cache.history(SuggestRequest(SPACE, MIN, trials[:end], 1))
    # a trial changes state, another disappears, a new one arrives
    later = [trials[0], trial("b", 2, "a", value=0.5), trials[2], trials[4], trial("f", 3, "a")]
    warm = cache.history(SuggestRequest(SPACE, MIN, later, 1))
    cold = TrialCache(SpaceEncoding(SPACE)).history(SuggestRequest(SPACE, MIN, later, 1))
    for h in (warm, cold):
        assert list(h.losses) == [3.0, 0.5, 1.0]
        assert [t.name for t in h.completed[:]] == ["a", "b", "f"]
        assert len(h.x_pending) == 0
        assert h.settled == 3
        assert len(h.keys) == 5
    np.testing.assert_array_equal(warm.x_completed, cold.x_completed)
    assert set(warm.keys) == set(cold.keys)
    maxim = Objective(ObjectiveType.MAXIMIZE, "acc")
    flipped = cache.history(SuggestRequest(SPACE, maxim, later, 1))
    assert list(flipped.losses) == [-3.0, -0.5, -1.0]


def test_settled_stops_at_the_first_pending_trial() -> None:
    trials = [
        trial("a", 1, "a"),
        trial("b", 2, "a", TrialCondition.RUNNING, None),
        trial("c", 3, "a"),
    ]
    h = TrialCache(SpaceEncoding(SPACE)).history(SuggestRequest(SPACE, MIN, trials, 1))
    assert len(h.losses) == 2
    assert h.settled == 1
    assert len(h.x_pending) == 1
