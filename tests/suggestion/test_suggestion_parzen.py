"""suggestion.algorithms._parzen: densities equal optuna's Parzen estimator (its rules, our code).

optuna is a bench/dev dependency, and ``_ParzenEstimator`` is private: these tests skip when it
is missing or has moved, and then only the self-contained checks below run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from suggestion.algorithms._encoding import SpaceEncoding
from suggestion.algorithms._parzen import ParzenEstimator, prepare
from tunery.space import Parameter, SearchSpace

SPACE = SearchSpace(
    (
        Parameter.double("x", -5.0, 10.0),
        Parameter.double("y", 0.0, 15.0),
        Parameter.categorical("c", ["a", "b", "c"]),
    )
)
SPAN = math.log(15.0) + math.log(15.0)  # optuna's densities are per unit of x and y


def data(n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = {
        "x": rng.uniform(-5, 10, n),
        "y": rng.uniform(0, 15, n),
        "c": rng.integers(0, 3, n).astype(float),
    }
    enc = SpaceEncoding(SPACE)
    unit = np.array(
        [
            enc.encode({"x": raw["x"][i], "y": raw["y"][i], "c": "abc"[int(raw["c"][i])]})
            for i in range(n)
        ]
    ).reshape(n, 3)
    return raw, unit


@pytest.fixture(scope="module")
def optuna_pe():  # type: ignore[no-untyped-def]
    pe = pytest.importorskip("optuna.samplers._tpe.parzen_estimator")
    sampler = pytest.importorskip("optuna.samplers._tpe.sampler")
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    space = {
        "x": FloatDistribution(-5, 10),
        "y": FloatDistribution(0, 15),
        "c": CategoricalDistribution(["a", "b", "c"]),
    }
    try:
        params = pe._ParzenEstimatorParameters(
            prior_weight=1.0,
            consider_magic_clip=True,
            consider_endpoints=False,
            weights=sampler.default_weights,
            multivariate=True,
        )
    except TypeError as exc:  # a newer optuna changed its private API
        pytest.skip(f"optuna's private Parzen estimator API changed: {exc}")

    def build(observations: dict[str, np.ndarray], names: list[str]):  # type: ignore[no-untyped-def]
        return pe._ParzenEstimator(
            {k: observations[k] for k in names}, {k: space[k] for k in names}, params
        )

    return build


@pytest.mark.parametrize("n", [0, 1, 3, 24, 60])
def test_joint_density_equals_optunas(optuna_pe, n: int) -> None:  # type: ignore[no-untyped-def]
    observations, unit = data(n, seed=n)
    points, unit_points = data(40, seed=100 + n)
    ours = ParzenEstimator(unit, SpaceEncoding(SPACE).dims, prior_weight=1.0, multivariate=True)
    theirs = optuna_pe(observations, ["x", "y", "c"])
    got = ours.log_density(prepare(SpaceEncoding(SPACE).dims, unit_points)) - SPAN
    np.testing.assert_allclose(got, theirs.log_pdf(points), rtol=0, atol=1e-9)


@pytest.mark.parametrize("n", [2, 30, 2000])  # 2000: a long history's minimum widths
def test_per_parameter_densities_equal_optunas(optuna_pe, n: int) -> None:  # type: ignore[no-untyped-def]
    observations, unit = data(n, seed=n)
    points, unit_points = data(40, seed=200 + n)
    dims = SpaceEncoding(SPACE).dims
    ours = ParzenEstimator(unit, dims, prior_weight=1.0, multivariate=False)
    per_dim = ours.log_density_per_dim(prepare(dims, unit_points))
    for j, (name, span) in enumerate([("x", 15.0), ("y", 15.0), ("c", 1.0)]):
        theirs = optuna_pe(observations, [name]).log_pdf({name: points[name]})
        np.testing.assert_allclose(per_dim[:, j] - math.log(span), theirs, atol=1e-9)


def test_samples_follow_the_mixture() -> None:
    """Self-contained: tight kernels (plus a negligible prior) sample near their centres."""
    dims = SpaceEncoding(SPACE).dims
    centres = np.array([[0.2 + d, 0.8 - d, 0.5] for d in (-0.02, -0.01, 0.0, 0.01, 0.02)])
    est = ParzenEstimator(centres, dims, prior_weight=1e-6, multivariate=True)
    draws = est.sample(np.random.default_rng(0), 4000)
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    assert np.median(draws[:, 0]) == pytest.approx(0.2, abs=0.05)
    assert np.median(draws[:, 1]) == pytest.approx(0.8, abs=0.05)
    assert np.mean(np.isclose(draws[:, 2], 0.5)) > 0.9  # the observed category's cell


@pytest.mark.parametrize("k", [1, 3, 25, 200, 400])
def test_split_equals_a_stable_sort(k: int) -> None:
    """The good/bad split by partition takes the same trials as a stable argsort would,
    ties (a plateau of equal losses) going to the earlier trials."""
    from suggestion.algorithms._parzen import split

    rng = np.random.default_rng(k)
    losses = rng.integers(0, 12, 300).astype(float)  # many ties
    order = np.argsort(losses, kind="stable")
    below, above = split(losses, k)
    np.testing.assert_array_equal(below, np.sort(order[:k]))
    np.testing.assert_array_equal(above, np.sort(order[k:]))
