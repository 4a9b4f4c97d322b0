"""Unit tests of the pieces ``motpe`` and ``parego`` build their models from: MOTPE's good
group (non-dominated rank, then greedy hypervolume subset selection on the split front) and
kernel weights, ParEGO's normalisation and weight sequence. The closed-loop behaviour is in
tests/conformance/test_multiobjective.py; the quality against optuna in
bench/multiobjective.py."""

from __future__ import annotations

import numpy as np
import pytest

from suggestion.algorithms.motpe import (
    contribution_weights,
    greedy_subset_order,
    pareto_scores,
)
from suggestion.algorithms.parego import chebyshev, front_normalised, simplex_weights
from tunery.pareto import hypervolume

REF = np.array([1.1, 1.1])


def _front(n: int, seed: int = 0) -> np.ndarray:
    x = np.sort(np.random.default_rng(seed).random(n))
    return np.c_[x, 1 - np.sqrt(x)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_order_adds_the_most_hypervolume_at_each_step(seed: int) -> None:
    z = _front(15, seed)
    order = greedy_subset_order(z, REF)
    assert sorted(order.tolist()) == list(range(15))
    chosen: list[int] = []
    for k in order:
        gains = {i: hypervolume(z[[*chosen, i]], REF) for i in range(len(z)) if i not in chosen}
        assert gains[int(k)] == pytest.approx(max(gains.values()), abs=1e-12)
        chosen.append(int(k))


def test_greedy_order_puts_duplicates_last() -> None:
    z = np.array([[0.0, 1.0], [0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    order = greedy_subset_order(z, REF).tolist()
    assert order[-1] in (1, 2) and set(order[:3]) >= {0, 3}


def test_the_good_group_is_whole_fronts_then_a_spread_part_of_the_split_one() -> None:
    # front 0: two points; front 1: a cluster of five near one end and one point at each end
    front0 = np.array([[0.0, 0.5], [0.5, 0.0]])
    cluster = np.c_[np.linspace(0.30, 0.34, 5), 1.0 - np.linspace(0.30, 0.34, 5)]
    ends = np.array([[0.05, 1.2], [1.2, 0.05]])
    dominated = np.array([[2.0, 2.0], [3.0, 3.0]])
    y = np.vstack([front0, cluster, ends, dominated])
    scores = pareto_scores(y, 5)
    good = set(np.argsort(scores, kind="stable")[:5].tolist())
    assert {0, 1} <= good  # the whole first front
    assert {7, 8} <= good  # both ends of the split front before a second cluster point
    assert len(good & set(range(2, 7))) == 1
    assert scores[9] > scores[7] and scores[10] > scores[8]


def test_a_close_pair_on_the_front_keeps_one_member_in_the_good_group() -> None:
    # each of the pair at the knee adds little beside the other (a small exclusive
    # contribution), but one of them adds the most hypervolume to the group
    y = np.array(
        [[0.0, 1.0], [1.0, 0.0], [0.3, 0.3], [0.31, 0.29], [0.12, 0.75], [0.75, 0.12], [2, 2]]
    )
    good = set(np.argsort(pareto_scores(y, 3), kind="stable")[:3].tolist())
    assert len(good & {2, 3}) == 1
    assert good - {2, 3} == {4, 5}


def test_contribution_weights_are_floored_at_a_quarter() -> None:
    y = np.array([[0.0, 1.0], [0.49, 0.51], [0.5, 0.5], [1.0, 0.0]])
    w = contribution_weights(y)
    assert w.max() == pytest.approx(1.0)
    assert np.all(w >= 0.25 - 1e-12)
    assert w[1] < w[0] and w[2] < w[3]  # crowded middle points weigh less than the ends
    assert np.array_equal(contribution_weights(np.c_[y, y[:, 0]]), np.ones(4))


def test_front_normalisation_ignores_how_far_dominated_trials_lie() -> None:
    front = np.array([[0.0, 1.0], [0.5, 0.3], [1.0, 0.1]])
    far = np.array([[0.9, 10.0]])
    z = front_normalised(np.vstack([front, far]))
    assert np.allclose(z[:3], front_normalised(front))
    assert np.allclose(z[:3].min(axis=0), 0.0) and np.allclose(z[:3].max(axis=0), 1.0)
    assert z[3, 1] > 1.0
    # the Chebyshev optimum of equal weights is the middle of the front, not an end
    assert int(np.argmin(chebyshev(z, np.array([0.5, 0.5]), 0.05))) == 1


def test_constant_objective_normalises_to_zero() -> None:
    z = front_normalised(np.array([[1.0, 2.0], [1.0, 3.0]]))
    assert np.array_equal(z[:, 0], [0.0, 0.0])


@pytest.mark.parametrize("m", [2, 3, 4])
def test_weights_lie_on_the_simplex_and_repeat_per_seed_and_index(m: int) -> None:
    for i in range(50):
        w = simplex_weights(7, i, m)
        assert w.shape == (m,) and np.all(w >= 0) and w.sum() == pytest.approx(1.0)
        assert np.array_equal(w, simplex_weights(7, i, m))
    assert not np.array_equal(simplex_weights(7, 3, m), simplex_weights(8, 3, m))


def test_successive_weights_cover_both_objectives_evenly() -> None:
    for n in (10, 30, 90):
        w1 = np.sort([simplex_weights(3, i, 2)[0] for i in range(n)])
        gaps = np.diff(np.concatenate([[0.0], w1, [1.0]]))
        assert gaps.max() < 2.7 / n  # a golden-ratio sequence: gaps within 2.62 / n
    assert np.array_equal(simplex_weights(3, 5, 1), [1.0])
