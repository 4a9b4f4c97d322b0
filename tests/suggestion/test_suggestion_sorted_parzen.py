"""suggestion.algorithms._sorted_parzen: the bad mixture kept sorted across requests.

Three promises: its densities are ParzenEstimator's (to rounding; tied centres take their
bandwidths in trial order), the sorted columns a warm instance updates equal the ones a cold
instance builds, and so a warm ``tpe`` answers every request exactly as a cold one does,
whatever changed between requests.
"""

from __future__ import annotations

import gc
import math
import weakref

import numpy as np
import pytest
from scipy.special import ndtr

from suggestion.algorithms import get_algorithm
from suggestion.algorithms._encoding import SpaceEncoding
from suggestion.algorithms._parzen import (
    SORTED_FROM,
    ParzenEstimator,
    _categorical_kernels,
    default_weights,
    prepare,
)
from suggestion.algorithms._sorted_parzen import SortedColumns, SortedParzen
from suggestion.algorithms.base import SuggestRequest, parse_settings
from suggestion.algorithms.tpe import Tpe
from suggestion.service import SuggestionService
from tunery.api import api_pb2
from tunery.space import Distribution, Parameter, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

from .helpers import add_trial, experiment, objective_value, wire

# no ties among numeric centres: ParzenEstimator's tie order is quicksort's
UNTIED = SearchSpace(
    (
        Parameter.double("x", -5.0, 10.0),
        Parameter.double("lr", 1e-4, 1.0, distribution=Distribution.LOG_UNIFORM),
        Parameter.double("s", 0.0, 1.0, step=1e-9),  # stepped: scored by cell masses
        Parameter.categorical("c", ["a", "b", "c"]),
    )
)
TIED = SearchSpace(
    (
        Parameter.integer("layers", 1, 8),
        Parameter.double("p", 0.0, 1.0, step=0.25),
        Parameter.double("y", 0.0, 1.0),
        Parameter.discrete("batch", [16, 32, 64]),
    )
)
MIN = Objective(ObjectiveType.MINIMIZE, "loss")


def unit_points(space: SearchSpace, n: int, seed: int) -> np.ndarray:
    """``n`` random points of ``space`` as encoded trials (cell centres where stepped)."""
    enc = SpaceEncoding(space)
    rng = np.random.default_rng(seed)
    return np.array([enc.encode(enc.decode(u)) for u in rng.random((n, len(enc)))]).reshape(
        n, len(enc)
    )


def sorted_mixture(
    x: np.ndarray, below: np.ndarray, extra: np.ndarray, space: SearchSpace
) -> SortedParzen:
    dims = SpaceEncoding(space).dims
    numeric = [j for j, d in enumerate(dims) if not d.is_list]
    columns = SortedColumns()
    columns.update(np.arange(len(x)), x[:, numeric])
    return columns.mixture(dims, x, below, extra, prior_weight=1.0)


def reference(points: np.ndarray, space: SearchSpace, cand: np.ndarray) -> np.ndarray:
    """(c, d) univariate log densities by optuna's rules written plainly, one kernel at a
    time where it helps reading; ties take their bandwidths in point order."""
    dims = SpaceEncoding(space).dims
    n = len(points)
    weights = np.append(default_weights(n), 1.0)
    weights /= weights.sum()
    min_sigma = 1.0 / min(100.0, n + 2.0)
    prepared = prepare(dims, cand)
    out = np.empty(cand.shape)
    for j, dim in enumerate(dims):
        if dim.is_list:
            probs = _categorical_kernels(dim, points[:, j], 1.0)
            out[:, j] = np.log((weights @ probs)[prepared.categories[j]])
            continue
        col = points[:, j]
        order = np.argsort(col, kind="stable")
        s = np.concatenate([[0.0], col[order], [1.0]])
        sig_sorted = np.maximum(s[1:-1] - s[:-2], s[2:] - s[1:-1])
        if n >= 2:
            sig_sorted[0] = s[2] - s[1]
            sig_sorted[-1] = s[-2] - s[-3]
        sigma = np.empty(n)
        sigma[order] = sig_sorted
        mus = np.append(col, 0.5)
        sigmas = np.append(np.clip(sigma, min_sigma, 1.0), 1.0)
        z = ndtr((1 - mus) / sigmas) - ndtr(-mus / sigmas)
        total = np.zeros(len(cand))
        for k in range(n + 1):
            if j in prepared.cells:
                lo, hi = prepared.cells[j]
                term = ndtr((hi - mus[k]) / sigmas[k]) - ndtr((lo - mus[k]) / sigmas[k])
            else:
                t = (cand[:, j] - mus[k]) / sigmas[k]
                term = np.exp(-0.5 * t * t) / (sigmas[k] * math.sqrt(2 * math.pi))
            total += weights[k] * term / z[k]
        out[:, j] = np.log(total)
    return out


@pytest.mark.parametrize("n", [0, 1, 2, 7, 60, 400, 3000])
@pytest.mark.parametrize("n_extra", [0, 3])
def test_densities_equal_the_parzen_estimators(n: int, n_extra: int) -> None:
    x = unit_points(UNTIED, n, seed=n)
    rng = np.random.default_rng(n + 1)
    below = np.zeros(n, dtype=bool)
    below[rng.choice(n, min(n // 3, 25), replace=False)] = True
    extra = unit_points(UNTIED, n_extra, seed=n + 2)
    dims = SpaceEncoding(UNTIED).dims
    ours = sorted_mixture(x, below, extra, UNTIED)
    theirs = ParzenEstimator(
        np.vstack([x[~below], extra]), dims, prior_weight=1.0, multivariate=False
    )
    cand = prepare(dims, unit_points(UNTIED, 40, seed=n + 3))
    np.testing.assert_allclose(
        ours.log_density_per_dim(cand), theirs.log_density_per_dim(cand), rtol=0, atol=1e-12
    )
    assert ours.windowed == (n >= SORTED_FROM)  # the long mixtures are the windowed ones


@pytest.mark.parametrize("n", [5, 30, 2500])
def test_tied_centres_take_bandwidths_in_trial_order(n: int) -> None:
    x = unit_points(TIED, n, seed=n)
    x[n // 2 :, 2] = x[: n - n // 2, 2]  # continuous duplicates too
    below = np.zeros(n, dtype=bool)
    below[::7] = True
    extra = unit_points(TIED, 2, seed=1)
    extra[0] = x[1]  # a pending trial at a completed one's point
    ours = sorted_mixture(x, below, extra, TIED)
    cand = unit_points(TIED, 30, seed=2)
    cand[:, 2] = np.random.default_rng(3).random(30)
    expected = reference(np.vstack([x[~below], extra]), TIED, cand)
    got = ours.log_density_per_dim(prepare(SpaceEncoding(TIED).dims, cand))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_wide_kernels_are_summed_in_full() -> None:
    """A crowded cluster and a few sparse points, whose kernels are wide: those are summed
    beside the windows of the narrow ones."""
    rng = np.random.default_rng(0)
    x = np.vstack([0.4 + 0.01 * rng.random((1970, 2)), rng.random((30, 2))])
    space = SearchSpace((Parameter.double("a", 0.0, 1.0), Parameter.double("b", 0.0, 1.0)))
    ours = sorted_mixture(x, np.zeros(len(x), dtype=bool), np.empty((0, 2)), space)
    assert ours.windowed and all(wide is not None for wide in ours.wide)
    theirs = ParzenEstimator(x, SpaceEncoding(space).dims, prior_weight=1.0, multivariate=False)
    cand = prepare(SpaceEncoding(space).dims, np.vstack([rng.random((20, 2)), x[::100]]))
    np.testing.assert_allclose(
        ours.log_density_per_dim(cand), theirs.log_density_per_dim(cand), rtol=0, atol=1e-12
    )


# -- SortedColumns -------------------------------------------------------------------------------


def fresh(rows: np.ndarray, x: np.ndarray) -> SortedColumns:
    columns = SortedColumns()
    columns.update(rows, x)
    return columns


def assert_same(a: SortedColumns, b: SortedColumns) -> None:
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.ids, b.ids)


def test_columns_grow_by_insertion_as_a_cold_build_would_sort_them() -> None:
    rng = np.random.default_rng(0)
    total = 400
    x = np.round(rng.random((total, 3)) * 8) / 8  # many ties
    done = np.zeros(total, dtype=bool)
    done[:150] = True
    done[150:200] = rng.random(50) < 0.5  # some are still pending
    warm = SortedColumns()
    for step in range(40):
        rows = np.flatnonzero(done)
        warm.update(rows, x[rows])
        assert_same(warm, fresh(rows, x[rows]))
        pending = np.flatnonzero(~done[: 200 + 5 * step])
        done[rng.choice(pending, min(2, len(pending)), replace=False)] = True  # finish late
        done[200 + 5 * step : 203 + 5 * step] = True  # and new trials
    assert warm.rebuilds == 1


@pytest.mark.parametrize("change", ["removed", "moved", "reordered", "same"])
def test_columns_rebuild_when_known_rows_change(change: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((50, 2))
    rows = np.arange(50)
    warm = fresh(rows, x)
    if change == "removed":  # trial 10 left the request: the later ones shift down
        rows, x = np.arange(49), np.delete(x, 10, axis=0)
    elif change == "moved":
        x = x.copy()
        x[10, 1] = 0.5
    elif change == "reordered":
        x = x[::-1].copy()
    warm.update(rows, x)
    assert_same(warm, fresh(rows, x))
    assert warm.rebuilds == (1 if change == "same" else 2)


# -- the algorithm: warm equals cold ------------------------------------------------------------


def objective(a: dict[str, object]) -> float:
    return float(sum(hash(str(v)) % 1000 for v in a.values())) / 1000.0


def request(space: SearchSpace, trials: list[TrialResult], count: int) -> SuggestRequest:
    return SuggestRequest(space, MIN, list(trials), count, experiment_name="warm")


@pytest.mark.parametrize("space", [UNTIED, TIED], ids=["untied", "tied"])
@pytest.mark.parametrize("count", [1, 3])
def test_a_warm_tpe_answers_as_a_cold_one(space: SearchSpace, count: int) -> None:
    """A request sequence with every kind of change; each answer equals a fresh instance's
    answer, and pure growth never rebuilds the columns."""
    settings = parse_settings(Tpe.settings_type, {"random_state": "3"}, "tpe")
    enc = SpaceEncoding(space)
    rng = np.random.default_rng(0)

    def trial(i: int, state: TrialCondition = TrialCondition.SUCCEEDED) -> TrialResult:
        a = enc.decode(rng.random(len(enc)))
        value = objective(a) if state is TrialCondition.SUCCEEDED else None
        return TrialResult(f"t{i}", a, state, value)

    n = SORTED_FROM + 60  # the sorted path
    trials = [trial(i) for i in range(n)] + [trial(n, TrialCondition.RUNNING)]
    warm = get_algorithm("tpe")(settings)
    assert isinstance(warm, Tpe)
    rebuilds = []
    for step in range(14):
        got = warm.suggest(request(space, trials, count))
        assert got == get_algorithm("tpe")(settings).suggest(request(space, trials, count))
        rebuilds.append(warm._columns.rebuilds)
        if step == 4:  # a pending trial completes, in the middle of the history
            i = next(i for i, t in enumerate(trials) if t.is_pending)
            t = trials[i]
            trials[i] = TrialResult(t.name, t.assignment, TrialCondition.SUCCEEDED, 0.5)
        elif step == 6:  # a trial is gone (deleted), another replica's view
            del trials[17]
        elif step == 8:  # a value changes: the split moves, the columns do not
            t = trials[40]
            trials[40] = TrialResult(t.name, t.assignment, t.condition, -1.0)
        elif step == 10:  # an assignment changes
            t = trials[41]
            trials[41] = TrialResult(t.name, enc.decode(rng.random(len(enc))), t.condition, 0.1)
        trials += [
            TrialResult(f"n{step}-{k}", a, TrialCondition.SUCCEEDED, objective(a))
            for k, a in enumerate(got)
        ]
        trials.append(trial(1000 + step, TrialCondition.RUNNING))  # and a new pending one
    # built once, rebuilt after the deletion and after the changed assignment only
    assert rebuilds[0] == 1 and rebuilds[6] == 1
    assert rebuilds[-1] == 3


def test_a_space_of_lists_only_keeps_no_columns() -> None:
    space = SearchSpace(
        (Parameter.categorical("c", ["a", "b", "c"]), Parameter.discrete("k", range(1000)))
    )
    settings = parse_settings(Tpe.settings_type, {"random_state": "1"}, "tpe")
    enc = SpaceEncoding(space)
    rng = np.random.default_rng(0)
    trials = []
    for i in range(SORTED_FROM + 50):
        a = enc.decode(rng.random(2))
        trials.append(TrialResult(f"t{i}", a, TrialCondition.SUCCEEDED, objective(a)))
    algo = Tpe(settings)
    [got] = algo.suggest(request(space, trials, 1))
    assert space.contains(got) and algo._columns.rebuilds == 0


# -- the service: a warm server answers as a cold one, and forgets evicted experiments ------------


def test_a_warm_server_answers_as_a_cold_one_and_its_columns_are_bounded() -> None:
    params = [
        ("x", api_pb2.DOUBLE, {"min": "0", "max": "1"}),
        ("n", api_pb2.INT, {"min": "1", "max": "50"}),
        ("c", api_pb2.CATEGORICAL, {"list": ["a", "b"]}),
    ]
    exp = experiment("tpe", name="long", params=params, settings={"random_state": "5"})
    request = api_pb2.GetSuggestionsRequest(experiment=exp)
    rng = np.random.default_rng(0)
    for _ in range(SORTED_FROM + 40):
        values = {
            "x": repr(rng.random()),
            "n": str(rng.integers(1, 51)),
            "c": "ab"[rng.integers(2)],
        }
        add_trial(request, values, value=objective_value(values))
    service = SuggestionService(max_experiments=1)
    for step in range(6):
        request.current_request_number = 1 + step % 2
        warm = service.suggest(request)
        assert warm == SuggestionService().suggest(request)  # a cold server, the same answer
        for assignment in warm.parameter_assignments:
            add_trial(request, wire(assignment), value=objective_value(wire(assignment)))
        if step == 3:  # a trial is gone: the columns rebuild, the answers still agree
            del request.trials[7]
    algorithm = service._experiments["long"].algorithm
    assert isinstance(algorithm, Tpe) and algorithm._columns.rebuilds == 2
    columns = weakref.ref(algorithm._columns)
    del algorithm
    service.suggest(api_pb2.GetSuggestionsRequest(experiment=experiment("random", name="other")))
    gc.collect()
    assert service.cached_experiments() == ["other"] and columns() is None  # dropped (LRU)
