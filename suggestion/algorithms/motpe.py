"""``motpe``: TPE for several objectives (multi-objective TPE, Ozaki et al. 2020/2022).

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. TPE needs
only an order of the completed trials to split them into a good and a bad group; MOTPE's order
is Pareto dominance: trials are ranked by non-dominated front, and within the front that the
good group's cut-off splits, by greedy hypervolume subset selection (two objectives: each
next trial is the one that adds most hypervolume to those chosen before it, on that front
normalised to its own range with reference 1.1; crowding distance for more objectives), so
the good group is a well-spread piece of the front rather than its most isolated points. The
good group holds ``ceil(0.1 n)`` trials, uncapped (optuna's multi-objective rule), and its
kernels are weighted by their hypervolume contribution within the group (two objectives;
flat otherwise), floored at a quarter of the largest so every good trial keeps a say, which
pulls the search towards the sparse ends of the front. The model is the TPE engine of
:mod:`suggestion.algorithms._parzen`, univariate by default as optuna's multi-objective TPE
(``multivariate: true`` for one joint mixture), so startup, candidates, constant liar for
pending trials and distinctness are TPE's own.

Settings: ``n_startup_trials`` (10), ``n_ei_candidates`` (24), ``multivariate`` (false),
``random_state``. A single-objective experiment works too (the order is then the objective's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from suggestion.algorithms._distinct import indexed_prior, request_rng
from suggestion.algorithms._encoding import encoding_for
from suggestion.algorithms._history import TrialCache
from suggestion.algorithms._multi import loss_matrix, normalised, scalar_request
from suggestion.algorithms._parzen import TpeConfig, tpe_suggest
from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    SuggestRequest,
)
from suggestion.algorithms.multivariate_tpe import MultivariateTpeSettings
from tunery.pareto import crowding_distance, hypervolume_contributions, nondominated_ranks
from tunery.space import Assignment

_WEIGHT_FLOOR = 0.25  # the least kernel weight of a good trial, relative to the largest


@dataclass(frozen=True)
class MotpeSettings(MultivariateTpeSettings):
    """multivariate-tpe's settings (checked the same way), and ``multivariate``."""

    multivariate: bool = False


def pareto_scores(y: np.ndarray, n_good: int) -> np.ndarray:
    """A score per row of the loss matrix ``y`` whose ``n_good`` lowest are MOTPE's good
    group: the front index, plus a tie-break in [0, 1) inside the front the cut-off splits."""
    ranks = nondominated_ranks(y, n_good)  # fronts past the cut are not needed
    scores = ranks.astype(float) + 0.5
    if len(y) == 0:
        return scores
    counts = np.bincount(ranks)
    before = np.concatenate([[0], np.cumsum(counts)])
    cut = int(np.searchsorted(before, n_good, side="right")) - 1  # the front the cut falls in
    if cut >= len(counts) or before[cut] == n_good:
        return scores
    members = np.flatnonzero(ranks == cut)
    z = normalised(y[members])  # the split front on its own range
    if y.shape[1] == 2:
        order = greedy_subset_order(z, np.full(2, 1.1))
    else:
        order = np.argsort(-crowding_distance(z), kind="stable")
    scores[members[order]] = cut + np.arange(len(members)) / len(members)
    return scores


def greedy_subset_order(z: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The rows of one bi-objective front ``z`` (mutually non-dominated) in the order greedy
    hypervolume subset selection picks them: each next row adds the most hypervolume to the
    rows picked before it (ties: the lower row index)."""
    n = len(z)
    picked: list[int] = []
    left = np.ones(n, dtype=bool)
    sel_f1 = np.empty(0)
    sel_f2 = np.empty(0)
    for _ in range(n):
        idx = np.flatnonzero(left)
        f1, f2 = z[idx, 0], z[idx, 1]
        # picked rows sorted by f1 ascending, so f2 descends along them
        pos = np.searchsorted(sel_f1, f1, side="left")
        right_f1 = np.append(sel_f1, reference[0])[pos]
        left_f2 = np.insert(sel_f2, 0, reference[1])[pos]
        gain = np.maximum(right_f1 - f1, 0.0) * np.maximum(left_f2 - f2, 0.0)
        best = idx[int(np.argmax(gain))]
        picked.append(best)
        left[best] = False
        at = int(np.searchsorted(sel_f1, z[best, 0]))
        sel_f1 = np.insert(sel_f1, at, z[best, 0])
        sel_f2 = np.insert(sel_f2, at, z[best, 1])
    return np.asarray(picked, dtype=int)


def good_size(n: int) -> int:
    """The good group of ``n`` completed trials: ``ceil(0.1 n)``, uncapped (optuna's
    multi-objective rule; the single-objective cap of 25 would starve a growing front)."""
    return math.ceil(0.1 * n)


def contribution_weights(y: np.ndarray) -> np.ndarray:
    """Kernel weights of the good group: each point's hypervolume contribution within the
    group (normalised losses, reference 1.1 per objective), scaled to a maximum of 1 and
    floored so that no point vanishes; flat weights for more than two objectives."""
    if len(y) == 0 or y.shape[1] != 2:
        return np.ones(len(y))
    contributions = hypervolume_contributions(normalised(y), np.full(2, 1.1))
    top = contributions.max()
    if not top > 0:
        return np.ones(len(y))
    return _WEIGHT_FLOOR + (1 - _WEIGHT_FLOOR) * np.clip(contributions / top, 0.0, 1.0)


class Motpe(Algorithm):
    """Multi-objective TPE: Pareto ranking and hypervolume weights on the TPE engine."""

    name = "motpe"
    settings_type: ClassVar[type[AlgorithmSettings]] = MotpeSettings
    capabilities: ClassVar[frozenset[str]] = frozenset({"multi-objective"})

    settings: MotpeSettings

    def __init__(self, settings: AlgorithmSettings | None = None) -> None:
        super().__init__(settings)
        self._cache: dict[str, object] = {}
        self._trials: TrialCache | None = None

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        s = self.settings
        encoding, changed = encoding_for(self._cache, request.space)
        if changed or self._trials is None:
            self._trials = TrialCache(encoding)
        trials, y = loss_matrix(request)
        scores = pareto_scores(y, good_size(len(trials)))
        inner = scalar_request(request, trials, scores)
        history = self._trials.history(inner)
        row_of = {id(t.assignment): i for i, t in enumerate(trials)}
        rows = np.array([row_of[id(t.assignment)] for t in history.completed], dtype=int)
        seed = self.seed(request)
        first = len(request.trials)
        config = TpeConfig(
            n_startup_trials=s.n_startup_trials,
            n_candidates=max(s.n_ei_candidates, 1),
            prior_weight=1.0,
            gamma=None,
            multivariate=s.multivariate,
            good_size=good_size,
        )

        def startup(count: int) -> list[Assignment]:  # a function of (seed, trial index)
            return indexed_prior(encoding, count, history.keys, seed, first)

        return tpe_suggest(
            encoding,
            history,
            request.count,
            request_rng(seed, request),
            config,
            startup,
            below_weights=lambda below: contribution_weights(y[rows[below]]),
        )
