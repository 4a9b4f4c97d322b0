"""bayesianoptimization: settings, the GP and its acquisition, encoding, batches, determinism,
caching and closed-loop quality (the shared contract is in tests/conformance)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import numpy as np
import pytest
import scipy.optimize

from suggestion.algorithms import _gp, _gp_acq, get_algorithm
from suggestion.algorithms._gp_space import ColumnKind, UnitCube
from suggestion.algorithms._threads import single_threaded_math
from suggestion.algorithms.base import (
    InvalidSettingsError,
    SpaceExhaustedError,
    SuggestRequest,
    parse_settings,
)
from suggestion.algorithms.bayesian import (
    BayesianOptimization,
    BayesianOptimizationSettings,
    model_subset,
    refit_point,
    standardize,
)
from tunery.space import Assignment, Distribution, Parameter, ParameterType, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

D = Distribution
MIN = Objective(ObjectiveType.MINIMIZE, "loss")
MAX = Objective(ObjectiveType.MAXIMIZE, "accuracy")
BRANIN_SPACE = SearchSpace((Parameter.double("x", -5.0, 10.0), Parameter.double("y", 0.0, 15.0)))
BRANIN_OPTIMUM = 0.397887
MIXED = SearchSpace(
    (
        Parameter.double("lr", 1e-5, 1.0, distribution=D.LOG_UNIFORM),
        Parameter.double("mom", 0.0, 1.0, distribution=D.NORMAL),
        Parameter.double("wd", 1e-6, 1e-2, distribution=D.LOG_NORMAL),
        Parameter.double("drop", 0.0, 0.5, step=0.05),
        Parameter.double("scale", 0.01, 10.0, step=0.01, distribution=D.LOG_UNIFORM),
        Parameter.integer("layers", 1, 8),
        Parameter.integer("width", 16, 1024, step=16),
        Parameter.integer("batch", 1, 4096, distribution=D.LOG_UNIFORM),
        Parameter.discrete("heads", [1, 2, 4, 8]),
        Parameter.discrete("ratio", [0.5, 0.125, 0.25]),
        Parameter.categorical("opt", ["sgd", "adam", "rmsprop"]),
    )
)


@pytest.fixture(autouse=True)
def _one_math_thread() -> Iterator[None]:
    """The GP's many tiny BLAS calls crawl on a busy multi-threaded BLAS pool; the algorithm
    limits it itself, the unit tests of the internals here do the same."""
    with single_threaded_math():
        yield


def make(**settings: str) -> BayesianOptimization:
    algo = get_algorithm("bayesianoptimization")
    assert algo is BayesianOptimization
    return BayesianOptimization(
        parse_settings(BayesianOptimizationSettings, settings, "bayesianoptimization")
    )


def branin(a: Assignment) -> float:
    x, y = float(a["x"]), float(a["y"])
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (y - b * x**2 + c * x - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x) + 10


def mixed_score(a: Assignment) -> float:
    """A smooth objective over MIXED with an interior optimum and categorical effects."""
    total = (math.log10(float(a["lr"])) + 2.5) ** 2 + (float(a["mom"]) - 0.9) ** 2
    total += (float(a["drop"]) - 0.1) ** 2 + (int(a["layers"]) - 3) ** 2 / 10
    total += {"sgd": 0.5, "adam": 0.0, "rmsprop": 0.3}[str(a["opt"])]
    return total


def request(
    space: SearchSpace,
    trials: list[TrialResult],
    count: int = 1,
    objective: Objective = MIN,
    name: str = "exp",
) -> SuggestRequest:
    return SuggestRequest(space, objective, list(trials), count, experiment_name=name)


def closed_loop(
    algo: BayesianOptimization,
    space: SearchSpace,
    f,  # type: ignore[no-untyped-def]
    n: int,
    objective: Objective = MIN,
    batch: int = 1,
) -> list[TrialResult]:
    trials: list[TrialResult] = []
    while len(trials) < n:
        out = algo.suggest(request(space, trials, min(batch, n - len(trials)), objective))
        for a in out:
            trials.append(TrialResult(f"t{len(trials)}", a, TrialCondition.SUCCEEDED, f(a)))
    return trials


def assert_in_space(space: SearchSpace, a: Assignment) -> None:
    assert space.contains(a), a
    for p in space:
        v = a[p.name]
        expected = {
            ParameterType.INT: int,
            ParameterType.DOUBLE: float,
            ParameterType.CATEGORICAL: str,
        }.get(p.type)
        if expected is not None:
            assert type(v) is expected, (p.name, v)
        else:
            assert any(v == x and type(v) is type(x) for x in p.values), (p.name, v)
        if p.is_numeric_range:
            assert v == p.snap(v), (p.name, v)  # type: ignore[arg-type]


# -- settings -------------------------------------------------------------------------------------


def test_defaults_are_katibs() -> None:
    s = make().settings
    assert (s.base_estimator, s.n_initial_points, s.acq_func, s.acq_optimizer) == (
        "GP",
        10,
        "gp_hedge",
        "auto",
    )
    assert s.random_state is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"base_estimator": "SVM"},
            "base_estimator SVM is not supported in Bayesian optimization",
        ),
        ({"n_initial_points": "-1"}, "n_initial_points should be great or equal than zero"),
        ({"n_initial_points": "2.5"}, r"failed to validate n_initial_points\(2.5\)"),
        ({"acq_func": "UCB"}, "acq_func UCB is not supported in Bayesian optimization"),
        ({"acq_optimizer": "adam"}, "acq_optimizer adam is not supported in Bayesian"),
        ({"random_state": "-3"}, "random_state should be great or equal than zero"),
        ({"kappa": "2"}, "unknown setting kappa for algorithm bayesianoptimization"),
        (
            {"base_estimator": "RF", "acq_optimizer": "lbfgs"},
            "acq_optimizer lbfgs needs base_estimator GP",
        ),
    ],
)
def test_bad_settings_are_rejected_with_katibs_messages(
    settings: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidSettingsError, match=message):
        make(**settings)


@pytest.mark.parametrize("estimator", ["GP", "RF", "ET", "GBRT"])
@pytest.mark.parametrize("acq", ["gp_hedge", "LCB", "EI", "PI", "EIps", "PIps"])
def test_every_katib_value_is_accepted(estimator: str, acq: str) -> None:
    s = make(base_estimator=estimator, acq_func=acq, acq_optimizer="sampling").settings
    assert (s.base_estimator, s.acq_func) == (estimator, acq)


def test_tree_estimators_need_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    settings = BayesianOptimizationSettings(base_estimator="RF")
    BayesianOptimization.validate(BRANIN_SPACE, MIN, settings)  # installed here
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name)
    )
    with pytest.raises(InvalidSettingsError, match="base_estimator RF needs scikit-learn"):
        BayesianOptimization.validate(BRANIN_SPACE, MIN, settings)
    BayesianOptimization.validate(BRANIN_SPACE, MIN, BayesianOptimizationSettings())


# -- the Gaussian process -------------------------------------------------------------------------


def _data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    is_cat = np.zeros(d, dtype=bool)
    is_cat[-1] = True
    x[:, -1] = rng.integers(0, 3, n)
    y = np.sin(5 * x[:, 0]) + x[:, 1] ** 2 + 0.3 * x[:, -1]
    return x, (y - y.mean()) / y.std(), is_cat


def test_likelihood_gradient_matches_finite_differences() -> None:
    x, y, is_cat = _data(25, 4)
    objective = _gp._Objective(x, y, is_cat)
    theta = np.array([0.3, -0.5, 1.0, 0.2, 0.4, -3.0])
    _, grad = objective(theta)
    numeric = scipy.optimize.approx_fprime(theta, lambda t: objective(t)[0], 1e-6)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4)


def test_posterior_gradients_match_finite_differences() -> None:
    x, y, is_cat = _data(30, 4)
    params = _gp.fit_kernel_params(x, y, is_cat)
    gp = _gp.GaussianProcess(x, y, is_cat, params, prior_mean=-1.0)
    c = np.random.default_rng(1).random((5, 4))
    c[:, -1] = 1.0
    mean, var, dmean, dvar = gp.posterior_with_grad(c)
    np.testing.assert_allclose((mean, var), gp.posterior(c), rtol=1e-7, atol=1e-10)
    eps = 1e-6
    for j in range(3):
        shifted = c.copy()
        shifted[:, j] += eps
        m2, v2 = gp.posterior(shifted)
        np.testing.assert_allclose((m2 - mean) / eps, dmean[:, j], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose((v2 - var) / eps, dvar[:, j], rtol=1e-3, atol=1e-4)
    assert np.all(dmean[:, -1] == 0.0) and np.all(dvar[:, -1] == 0.0)  # categorical column


def test_gp_interpolates_and_reverts_to_its_prior_mean() -> None:
    x, y, is_cat = _data(20, 3)
    params = _gp.fit_kernel_params(x, y, is_cat)
    gp = _gp.GaussianProcess(x, y, is_cat, params, prior_mean=float(y.min()))
    mean, var = gp.posterior(x)
    np.testing.assert_allclose(mean, y, atol=0.1)
    assert np.all(var < 0.05 * params.scale)
    far = gp.posterior(np.array([[50.0, 50.0, 7.0]]))  # far away: the prior
    assert far[0][0] == pytest.approx(y.min(), abs=1e-6)
    assert far[1][0] == pytest.approx(params.scale, rel=1e-6)


def test_conditioning_by_block_update_equals_a_fresh_factorisation() -> None:
    x, y, is_cat = _data(30, 3)
    params = _gp.fit_kernel_params(x[:20], y[:20], is_cat)
    gp = _gp.GaussianProcess(x[:20], y[:20], is_cat, params, prior_mean=-0.5)
    extended = gp.condition(x[20:], y[20:])
    fresh = _gp.GaussianProcess(x, y, is_cat, params, prior_mean=-0.5)
    c = np.random.default_rng(2).random((7, 3))
    np.testing.assert_allclose(extended.posterior(c), fresh.posterior(c), rtol=1e-8, atol=1e-10)


def test_fit_is_a_pure_function_and_finds_the_relevant_inputs() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((40, 3))
    y = np.sin(6 * x[:, 0])  # only the first input matters
    y = (y - y.mean()) / y.std()
    is_cat = np.zeros(3, dtype=bool)
    a = _gp.fit_kernel_params(x, y, is_cat)
    assert a == _gp.fit_kernel_params(x.copy(), y.copy(), is_cat)
    lengthscales = a.lengthscales
    assert lengthscales[0] < lengthscales[1] and lengthscales[0] < lengthscales[2]


def test_duplicated_points_and_constant_data_still_factorise() -> None:
    x = np.repeat(np.random.default_rng(4).random((5, 2)), 4, axis=0)
    is_cat = np.zeros(2, dtype=bool)
    for y in (np.random.default_rng(5).normal(size=20), np.zeros(20)):
        params = _gp.fit_kernel_params(x, y, is_cat)
        gp = _gp.GaussianProcess(x, y, is_cat, params)
        mean, var = gp.posterior(x)
        assert np.all(np.isfinite(mean)) and np.all(var > 0)


# -- acquisition ----------------------------------------------------------------------------------


def test_log_ei_is_exact_where_plain_ei_is_computable_and_finite_far_below() -> None:
    from scipy.stats import norm

    z = np.linspace(-30, 5, 400)
    value, slope = _gp_acq.log_h(z)
    direct = z * norm.cdf(z) + norm.pdf(z)
    ok = direct > 1e-300
    np.testing.assert_allclose(value[ok], np.log(direct[ok]), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(slope[ok], norm.cdf(z[ok]) / direct[ok], rtol=1e-6)
    deep, deep_slope = _gp_acq.log_h(np.array([-100.0, -1e4, -1e8]))
    assert np.all(np.isfinite(deep)) and np.all(np.diff(deep) < 0)
    assert np.all(deep_slope > 0)


@pytest.mark.parametrize("kind", list(_gp_acq.AcquisitionKind))
def test_acquisition_gradients_match_finite_differences(kind: _gp_acq.AcquisitionKind) -> None:
    x, y, is_cat = _data(20, 3)
    gp = _gp.GaussianProcess(x, y, is_cat, _gp.fit_kernel_params(x, y, is_cat), float(y.min()))
    acq = _gp_acq.Acquisition(gp, kind, float(y.max()))
    c = np.random.default_rng(6).random((4, 3))
    c[:, -1] = 2.0
    value, grad = acq.with_grad(c)
    np.testing.assert_allclose(value, acq(c), rtol=1e-9)
    for j in range(2):
        shifted = c.copy()
        shifted[:, j] += 1e-6
        np.testing.assert_allclose((acq(shifted) - value) / 1e-6, grad[:, j], rtol=1e-3, atol=1e-3)


def test_candidates_are_snapped_ranked_and_unique() -> None:
    cube = UnitCube(MIXED)
    rng = np.random.default_rng(7)
    x = cube.from_unit(rng.random((15, cube.dim)))
    y = standardize(-np.array([mixed_score(cube.decode(r)) for r in x]))
    gp = _gp.GaussianProcess(x, y, cube.is_cat, _gp.fit_kernel_params(x, y, cube.is_cat))
    acq = _gp_acq.Acquisition(gp, _gp_acq.AcquisitionKind.LOG_EI, float(y.max()))
    points, scores = _gp_acq.rank_candidates(acq, cube, rng, x[:2], n_samples=256)
    np.testing.assert_array_equal(points, cube.snap(points))
    assert np.all(np.diff(scores) <= 0)
    assert len(np.unique(points, axis=0)) == len(points)
    np.testing.assert_allclose(acq(points[:5]), scores[:5], rtol=1e-9)


# -- encoding -------------------------------------------------------------------------------------


def test_encoding_round_trips_every_parameter_kind() -> None:
    cube = UnitCube(MIXED)
    kinds = {c.param.name: c.kind for c in cube.columns}
    assert kinds["lr"] is ColumnKind.CONTINUOUS and kinds["drop"] is ColumnKind.GRID
    assert kinds["opt"] is ColumnKind.CATEGORICAL and kinds["heads"] is ColumnKind.GRID
    assert list(cube.is_cat) == [c.param.name == "opt" for c in cube.columns]
    u = np.random.default_rng(8).random((300, cube.dim))
    u[:, -1] *= 3
    snapped = cube.snap(u)
    for row in snapped:
        a = cube.decode(row)
        assert_in_space(MIXED, a)
        np.testing.assert_allclose(cube.encode(a), row, atol=1e-12)


def test_log_and_stepped_columns_keep_their_geometry() -> None:
    space = SearchSpace(
        (
            Parameter.double("lr", 1e-4, 1.0, distribution=D.LOG_UNIFORM),
            Parameter.integer("n", 0, 9),
            Parameter.integer("k", 1, 1000, distribution=D.LOG_UNIFORM),
        )
    )
    cube = UnitCube(space)
    mid = cube.encode({"lr": 1e-2, "n": 0, "k": 1})
    assert mid is not None
    assert mid[0] == pytest.approx(0.5)  # log axis
    assert mid[1] == pytest.approx(0.05)  # value 0 owns the first of 10 equal cells
    assert cube.decode(np.array([0.5, 0.999, 0.5]))["n"] == 9
    assert 25 <= cube.decode(np.array([0.5, 0.5, 0.5]))["k"] <= 40  # ~sqrt(1000)


def test_values_outside_the_space_are_not_encoded() -> None:
    cube = UnitCube(MIXED)
    good = cube.decode(np.full(cube.dim, 0.3))
    assert cube.encode(good) is not None
    assert cube.encode({**good, "opt": "lbfgs"}) is None
    assert cube.encode({k: v for k, v in good.items() if k != "lr"}) is None
    assert cube.encode({**good, "lr": float("nan")}) is None


# -- suggestions ----------------------------------------------------------------------------------


def test_every_type_is_honoured_in_batches_with_pending_trials() -> None:
    algo = make(random_state="1", n_initial_points="4")
    trials: list[TrialResult] = []
    for _ in range(4):
        out = algo.suggest(request(MIXED, trials, 4))
        keys = {MIXED.key(t.assignment) for t in trials}
        assert len({MIXED.key(a) for a in out}) == 4 and not keys & {MIXED.key(a) for a in out}
        for a in out:
            assert_in_space(MIXED, a)
        done = [
            TrialResult(t.name, t.assignment, TrialCondition.SUCCEEDED, mixed_score(t.assignment))
            for t in trials
        ]
        trials = done + [
            TrialResult(f"t{len(done) + i}", a, TrialCondition.RUNNING) for i, a in enumerate(out)
        ]


def test_a_batch_spreads_out_around_pending_points() -> None:
    trials = closed_loop(make(random_state="2"), BRANIN_SPACE, branin, 15)
    out = make(random_state="2").suggest(request(BRANIN_SPACE, trials, 8))
    pts = np.array([[a["x"] / 15, a["y"] / 15] for a in out])
    gaps = np.linalg.norm(pts[:, None] - pts[None], axis=-1)[np.triu_indices(8, 1)]
    assert gaps.min() > 1e-3  # a liar-free batch would return 8 copies of one optimum


def test_same_request_same_answer_and_the_seed_matters() -> None:
    trials = closed_loop(make(random_state="3"), MIXED, mixed_score, 14)
    req = request(MIXED, trials, 3)
    first = make(random_state="3").suggest(req)
    assert make(random_state="3").suggest(req) == first
    assert make(random_state="4").suggest(req) != first
    unseeded = make().suggest(req)
    assert make().suggest(req) == unseeded  # seed derived from the experiment name


def test_a_fresh_instance_answers_like_a_warm_one_across_refits() -> None:
    """Past 30 trials hyperparameters come from a memo keyed by data; answers never depend
    on what the instance saw before."""
    warm = make(random_state="5", n_initial_points="5")
    trials = closed_loop(warm, BRANIN_SPACE, branin, 36, batch=3)
    for n in (31, 33, 36):
        req = request(BRANIN_SPACE, trials[:n], 2)
        assert make(random_state="5", n_initial_points="5").suggest(req) == warm.suggest(req)
    assert refit_point(33) == 32 and refit_point(36) == 36


def test_refit_schedule_and_model_subset() -> None:
    ns = (1, 30, 31, 45, 46, 100, 104, 200)
    assert [refit_point(n) for n in ns] == [1, 30, 30, 45, 45, 96, 102, 195]
    assert all(refit_point(n) >= 0.93 * n for n in range(1, 1000))
    score = np.arange(1000.0)
    keep = model_subset(score, cap=400)
    assert len(keep) == 400 and np.all(np.diff(keep) > 0)
    assert set(range(800, 1000)) <= set(keep)  # the best 200 (= the most recent here)
    assert len(model_subset(np.arange(50.0))) == 50


def test_closed_loop_reaches_the_branin_optimum() -> None:
    trials = closed_loop(make(random_state="0"), BRANIN_SPACE, branin, 40)
    best = min(t.value for t in trials if t.value is not None)
    assert best - BRANIN_OPTIMUM < 0.05


def test_maximize_and_minimize_find_the_same_optimum() -> None:
    space = SearchSpace((Parameter.double("x", 0.0, 1.0), Parameter.integer("n", 0, 20)))

    def loss(a: Assignment) -> float:
        return (float(a["x"]) - 0.3) ** 2 + (int(a["n"]) - 7) ** 2 / 100

    for objective, f in ((MIN, loss), (MAX, lambda a: -loss(a))):
        trials = closed_loop(make(random_state="6"), space, f, 25, objective)
        best = min(trials, key=lambda t: loss(t.assignment))
        assert abs(float(best.assignment["x"]) - 0.3) < 0.05
        assert best.assignment["n"] == 7


def test_nan_inf_failed_and_pending_trials() -> None:
    base = closed_loop(make(random_state="7"), BRANIN_SPACE, branin, 16)
    odd = [math.nan, math.inf, -math.inf]
    trials = [
        TrialResult(t.name, t.assignment, TrialCondition.SUCCEEDED, odd[i % 3])
        if i % 4 == 0
        else t
        for i, t in enumerate(base)
    ]
    trials[1] = TrialResult("t1", trials[1].assignment, TrialCondition.FAILED)
    trials[2] = TrialResult("t2", trials[2].assignment, TrialCondition.RUNNING)
    out = make(random_state="7").suggest(request(BRANIN_SPACE, trials, 4))
    assert len(out) == 4
    keys = {BRANIN_SPACE.key(t.assignment) for t in trials}
    assert not keys & {BRANIN_SPACE.key(a) for a in out}
    every_nan = [TrialResult(t.name, t.assignment, t.condition, math.nan) for t in base]
    assert len(make(random_state="7").suggest(request(BRANIN_SPACE, every_nan, 2))) == 2


def test_nan_regions_are_avoided() -> None:
    """NaN counts as the worst value: half the space diverges and the search learns it."""

    def f(a: Assignment) -> float:
        return math.nan if float(a["x"]) > 2.5 else (float(a["x"]) - 2.0) ** 2 + float(a["y"])

    trials = closed_loop(make(random_state="8"), BRANIN_SPACE, f, 30)
    late = trials[20:]
    assert sum(math.isnan(t.value) for t in late if t.value is not None) <= 3


def test_tiny_histories_constant_values_and_duplicates() -> None:
    algo = make(random_state="9", n_initial_points="0")
    assert len(algo.suggest(request(BRANIN_SPACE, [], 3))) == 3
    one = [TrialResult("a", {"x": 1.0, "y": 2.0}, TrialCondition.SUCCEEDED, 5.0)]
    assert len(algo.suggest(request(BRANIN_SPACE, one, 2))) == 2
    dup = [
        TrialResult(f"d{i}", {"x": 1.0, "y": 2.0}, TrialCondition.SUCCEEDED, v)
        for i, v in enumerate([5.0, 6.0, 5.5])
    ]
    flat = [
        TrialResult(f"c{i}", {"x": float(i), "y": float(i)}, TrialCondition.SUCCEEDED, 1.0)
        for i in range(8)
    ]
    for trials in (dup + one, flat):
        out = algo.suggest(request(BRANIN_SPACE, trials, 3))
        assert len({BRANIN_SPACE.key(a) for a in out}) == 3
        assert all(BRANIN_SPACE.contains(a) for a in out)


def test_initial_design_is_sobol_until_n_initial_points() -> None:
    algo = make(random_state="10", n_initial_points="6")
    first = algo.suggest(request(BRANIN_SPACE, [], 6))
    fitted: list[int] = []
    original = algo._fitted_params

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        fitted.append(1)
        return original(*args, **kwargs)

    algo._fitted_params = spy  # type: ignore[method-assign]
    trials = [TrialResult(f"t{i}", a, TrialCondition.RUNNING) for i, a in enumerate(first[:4])]
    algo.suggest(request(BRANIN_SPACE, trials, 2))  # 4 in flight + 2 = 6: still the design
    assert not fitted
    done = [
        TrialResult(f"t{i}", a, TrialCondition.SUCCEEDED, branin(a)) for i, a in enumerate(first)
    ]
    algo.suggest(request(BRANIN_SPACE, done, 1))
    assert fitted


def test_a_small_finite_space_is_searched_exhaustively_then_exhausted() -> None:
    space = SearchSpace(
        (Parameter.integer("a", 0, 4), Parameter.categorical("b", ["p", "q", "r"]))
    )

    def f(a: Assignment) -> float:
        return (int(a["a"]) - 2) ** 2 + {"p": 1.0, "q": 0.0, "r": 2.0}[str(a["b"])]

    trials = closed_loop(make(random_state="11", n_initial_points="3"), space, f, 15)
    assert len({space.key(t.assignment) for t in trials}) == 15
    assert min(t.value for t in trials if t.value is not None) == 0.0
    algo = make(random_state="11")
    with pytest.raises(SpaceExhaustedError, match="exhausted"):
        algo.suggest(request(space, trials, 1))
    assert len(algo.suggest(request(space, trials[:-1], 1))) == 1


@pytest.mark.parametrize(
    "settings",
    [{"acq_func": "LCB"}, {"acq_func": "PI"}, {"acq_optimizer": "sampling"}],
    ids=lambda s: "-".join(s.values()),
)
def test_gp_acquisition_variants_beat_the_initial_design(settings: dict[str, str]) -> None:
    trials = closed_loop(make(random_state="12", **settings), BRANIN_SPACE, branin, 24, batch=2)
    values = [t.value for t in trials if t.value is not None]
    assert min(values[10:]) < min(values[:10])
    assert len({BRANIN_SPACE.key(t.assignment) for t in trials}) == 24


@pytest.mark.parametrize(
    "settings",
    [
        {"base_estimator": "RF"},
        {"base_estimator": "ET", "acq_func": "LCB"},
        {"base_estimator": "GBRT", "acq_func": "PI", "acq_optimizer": "sampling"},
    ],
    ids=lambda s: s["base_estimator"],
)
def test_tree_estimators_propose_valid_distinct_batches(settings: dict[str, str]) -> None:
    """Tree ensembles are for Katib compatibility; their quality is in bench/gp_quality.py."""
    algo = make(random_state="13", n_initial_points="5", **settings)
    trials = closed_loop(algo, MIXED, mixed_score, 12, batch=4)
    pending = [TrialResult("p", trials[-1].assignment, TrialCondition.RUNNING)]
    out = algo.suggest(request(MIXED, trials[:-1] + pending, 4))
    keys = {MIXED.key(t.assignment) for t in trials}
    assert len({MIXED.key(a) for a in out}) == 4 and not keys & {MIXED.key(a) for a in out}
    for a in out:
        assert_in_space(MIXED, a)
    assert (
        make(random_state="13", n_initial_points="5", **settings).suggest(
            request(MIXED, trials[:-1] + pending, 4)
        )
        == out
    )


def test_no_torch_is_imported() -> None:
    code = textwrap.dedent(
        """
        import sys
        from suggestion.algorithms.base import SuggestRequest
        from suggestion.algorithms.bayesian import BayesianOptimization
        from tunery.space import Parameter, SearchSpace
        from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult
        space = SearchSpace((Parameter.double("x", 0.0, 1.0), Parameter.double("y", 0.0, 1.0)))
        trials = [TrialResult(f"t{i}", {"x": i / 7, "y": (i * 3 % 7) / 7},
                              TrialCondition.SUCCEEDED, float(i % 3)) for i in range(12)]
        req = SuggestRequest(space, Objective(ObjectiveType.MINIMIZE, "l"), trials, 2)
        assert len(BayesianOptimization().suggest(req)) == 2
        assert "torch" not in sys.modules and "sklearn" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_request_encodes_only_its_new_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The history of N known trials and k new ones encodes k rows (issue 17: the GP at
    history 1,000 spent most of a request re-encoding every trial), and the answer is the
    one a fresh instance gives."""
    space = SearchSpace((Parameter.double("x", 0.0, 1.0), Parameter.double("y", 0.0, 1.0)))
    objective = Objective(ObjectiveType.MINIMIZE, "loss")
    rng = np.random.default_rng(5)
    trials = [
        TrialResult(f"t{i}", {"x": float(a), "y": float(b)}, TrialCondition.SUCCEEDED, a + b)
        for i, (a, b) in enumerate(rng.random((40, 2)))
    ]
    cls = get_algorithm("bayesianoptimization")
    settings = parse_settings(cls.settings_type, {"random_state": "3"}, "bayesianoptimization")
    warm = cls(settings)
    warm.suggest(SuggestRequest(space, objective, trials, 1, experiment_name="e"))
    calls = []
    encode = UnitCube.encode
    monkeypatch.setattr(UnitCube, "encode", lambda self, a: calls.append(a) or encode(self, a))
    more = [*trials, TrialResult("t40", {"x": 0.5, "y": 0.25}, TrialCondition.SUCCEEDED, 0.75)]
    more.append(TrialResult("t41", {"x": 0.125, "y": 0.5}, TrialCondition.RUNNING, None))
    request = SuggestRequest(space, objective, more, 1, experiment_name="e")
    got = warm.suggest(request)
    history_encodes = [a for a in calls if a in ({"x": 0.5, "y": 0.25}, {"x": 0.125, "y": 0.5})]
    assert len(history_encodes) == 2
    assert len(calls) <= 3  # the two new trials, and the chosen point
    monkeypatch.setattr(UnitCube, "encode", encode)
    assert got == cls(settings).suggest(request)
