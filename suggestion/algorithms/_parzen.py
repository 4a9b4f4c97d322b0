"""Parzen estimators over the unit cube, and the TPE step built on them.

Called by ``tpe`` and ``multivariate_tpe``. The Tree-structured Parzen Estimator (Bergstra et
al., 2011) splits the completed trials into a "below" (good) and an "above" (bad) group, fits a
mixture of truncated normals (numeric coordinates) or smoothed one-hot kernels (categorical
coordinates) to each, and proposes the candidate drawn from the good mixture ``l`` that
maximises ``l(x) / g(x)``. The rules follow optuna's ``TPESampler`` (this module reimplements
them in vectorised numpy; it copies no code):

- a prior kernel (centre of the cube, width 1, weight ``prior_weight``) joins every mixture;
- a kernel's bandwidth is the distance to the farther of its neighbouring centres along its
  coordinate (the cube's ends count as neighbours, except for the outermost centres), clipped
  to [1/min(100, 1 + kernels), 1] ("magic clip");
- observation weights are 1 for the 25 most recent trials and ramp linearly below that;
- the good group holds ``min(ceil(0.1 n), 25)`` trials (hyperopt's ``gamma`` rule
  ``min(ceil(gamma sqrt(n)), 25)`` when a gamma is given);
- pending trials and the batch's earlier picks join the bad group ("constant liar"), so a
  batch spreads out instead of repeating the best point.

Conditional spaces (univariate only; multivariate-tpe refuses them): each coordinate's
mixtures are fitted on the trials of its group where the parameter was active (optuna's rule),
so an inactive parameter contributes no kernel; a coordinate with no such trial has the prior
kernel alone. Constraints (optuna's ``constraints_func`` rule): when some completed trial is
infeasible, trials are ranked feasible first (by loss), then infeasible ones by their total
violation, and the good group is the head of that ranking.

Ints and stepped doubles are scored by the probability mass of their whole cell, so the
discrete kernels match the grid exactly; numeric coordinates are continuous otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import ndtr, ndtri

from suggestion.algorithms._distinct import fill_distinct
from suggestion.algorithms._encoding import Dim, Key, SpaceEncoding
from suggestion.algorithms._history import History
from tunery.space import Assignment

if TYPE_CHECKING:  # the module imports this one
    from suggestion.algorithms._sorted_parzen import SortedColumns, SortedParzen

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_TINY = 1e-300
_EXP_FLOOR = -700.0  # exp() stays a normal float (no slow underflow path) above this
_Z_CAP = 40.0  # ndtr(-40) underflows to 0 in double precision
_FLAT_RECENT = 25
SORTED_FROM = 1000
"""Univariate bad mixtures of this many kernels or more are built from the caller's sorted
columns (:func:`tpe_suggest`); shorter ones cost as little as they are (the sorted path
breaks even at about 600 kernels, docs/benchmarks.md)."""


def default_weights(n: int) -> np.ndarray:
    """Weights of ``n`` observations, oldest first: flat for the latest 25, a ramp before."""
    if n <= _FLAT_RECENT:
        return np.ones(n)
    ramp = np.linspace(1.0 / n, 1.0, num=n - _FLAT_RECENT)
    return np.concatenate([ramp, np.ones(_FLAT_RECENT)])


def n_below(n: int, gamma: float | None) -> int:
    """Size of the good group among ``n`` completed trials."""
    if gamma is None:
        return min(math.ceil(0.1 * n), _FLAT_RECENT)
    return min(math.ceil(gamma * math.sqrt(n)), _FLAT_RECENT)


@dataclass(frozen=True)
class Candidates:
    """Unit-cube points prepared for scoring: the bounds of their cells for stepped numeric
    coordinates (by coordinate index) and their category indices for list coordinates."""

    u: np.ndarray  # (c, d)
    cells: dict[int, tuple[np.ndarray, np.ndarray]]
    categories: dict[int, np.ndarray]


def prepare(dims: Sequence[Dim], u: np.ndarray) -> Candidates:
    cells: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    categories: dict[int, np.ndarray] = {}
    for j, dim in enumerate(dims):
        if dim.is_list:
            categories[j] = dim.index_of(u[:, j])
        elif dim.is_stepped:
            cells[j] = dim.cell_bounds(u[:, j])
    return Candidates(u, cells, categories)


class ParzenEstimator:
    """A kernel mixture over the unit cube fitted to observations ``x`` (oldest first).

    Numeric coordinates are held as one block: kernel centres and widths are (K, m) arrays
    for the m numeric coordinates, so fitting, sampling and scoring are a few array
    operations whatever the dimension.
    """

    def __init__(
        self,
        x: np.ndarray,
        dims: Sequence[Dim],
        *,
        prior_weight: float,
        multivariate: bool,
        weights: np.ndarray | None = None,
    ) -> None:
        n = x.shape[0]
        self.dims = dims
        self.multivariate = multivariate
        weights = np.append(default_weights(n) if weights is None else weights, prior_weight)
        self.n_kernels = n + 1
        self.weights = weights / weights.sum()
        self.log_weights = np.log(self.weights)
        self.numeric = [j for j, d in enumerate(dims) if not d.is_list]
        self.continuous = [i for i, j in enumerate(self.numeric) if not dims[j].is_stepped]
        self.probs = {
            j: _categorical_kernels(d, x[:, j], prior_weight)
            for j, d in enumerate(dims)
            if d.is_list
        }
        block = x[:, self.numeric].T  # (m, n): one row per numeric coordinate
        min_sigma = 1.0 / min(100.0, 1.0 + self.n_kernels)
        sigmas = np.clip(_neighbour_bandwidths(block), min_sigma, 1.0)
        prior = np.full((block.shape[0], 1), 0.5)
        self.mus = np.hstack([block, prior])  # (m, K)
        self.sigmas = np.hstack([sigmas, np.ones_like(prior)])
        self.log_z = _log_unit_mass(self.mus, self.sigmas)
        self.log_norm = -np.log(self.sigmas) - _LOG_SQRT_2PI - self.log_z  # (m, K)
        self._scale = math.sqrt(0.5) / self.sigmas
        self._coef = np.exp(self.log_norm) * self.weights

    # -- sampling --------------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` points of the unit cube drawn from the mixture (categorical coordinates at
        their cell centres). Multivariate mixtures draw one kernel per point for every
        coordinate; univariate ones draw a kernel per coordinate."""
        d = len(self.dims)
        out = np.empty((size, d))
        if self.multivariate:
            kernels = np.repeat(rng.choice(self.n_kernels, size=(size, 1), p=self.weights), d, 1)
        else:
            kernels = rng.choice(self.n_kernels, size=(size, d), p=self.weights)
        if self.numeric:
            k = kernels[:, self.numeric]  # (size, m)
            rows = np.arange(len(self.numeric))
            mus, sigmas = self.mus[rows, k], self.sigmas[rows, k]
            lo, hi = ndtr(-mus / sigmas), ndtr((1.0 - mus) / sigmas)
            p = np.clip(lo + rng.random(mus.shape) * (hi - lo), _TINY, 1.0 - 1e-16)
            out[:, self.numeric] = np.clip(mus + sigmas * ndtri(p), 0.0, 1.0)
        for j, probs in self.probs.items():
            cum = np.cumsum(probs[kernels[:, j]], axis=1)
            r = rng.random(size)[:, None] * cum[:, -1:]
            idx = np.minimum((cum < r).sum(axis=1), probs.shape[1] - 1)
            out[:, j] = (idx + 0.5) / probs.shape[1]
        return out

    # -- densities -------------------------------------------------------------------------------
    #
    # Every mixture holds the prior kernel (centre 0.5, width 1), whose density on the unit
    # interval is at least 0.24, so sums of plain (not log) densities never underflow.

    def _numeric_log_terms(self, cand: Candidates) -> np.ndarray:
        """(m, c, K) log density of each numeric kernel at each candidate coordinate."""
        z = cand.u[:, self.numeric].T[:, :, None] - self.mus[:, None, :]
        z /= self.sigmas[:, None, :]
        np.square(z, out=z)
        z *= -0.5
        z += self.log_norm[:, None, :]
        for i, j in enumerate(self.numeric):
            if j in cand.cells:  # a stepped coordinate: the log mass of its whole cell
                z[i] = self._cell_log_mass(i, *cand.cells[j])
        return z

    def _cell_log_mass(self, i: int, lo_u: np.ndarray, hi_u: np.ndarray) -> np.ndarray:
        mus, sigmas = self.mus[i], self.sigmas[i]
        lo = np.clip(np.subtract.outer(lo_u, mus) / sigmas, -_Z_CAP, _Z_CAP)
        hi = np.clip(np.subtract.outer(hi_u, mus) / sigmas, -_Z_CAP, _Z_CAP)
        flip = lo > 0  # use the upper tail where it is the accurate one
        mass = np.where(flip, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo))
        return np.log(np.maximum(mass, _TINY)) - self.log_z[i]

    def log_density_per_dim(self, cand: Candidates) -> np.ndarray:
        """(c, d) log density of each coordinate's own mixture (univariate TPE)."""
        out = np.empty(cand.u.shape)
        if self.numeric:
            out[:, self.numeric] = np.log(self._numeric_densities(cand)).T
        for j, probs in self.probs.items():
            out[:, j] = np.log((self.weights @ probs)[cand.categories[j]])
        return out

    def _numeric_densities(self, cand: Candidates) -> np.ndarray:
        """(m, c) mixture density of each numeric coordinate at each candidate.

        The hot loop of univariate TPE at long histories (m x c x K terms). A continuous
        coordinate takes ``sum_k coef_k exp(-t_k^2)`` with ``t = (u - mu) sqrt(1/2) / sigma``
        and ``coef = weight * exp(log_norm)`` precomputed per kernel: four passes over a
        (c, K) buffer that is reused from coordinate to coordinate (it stays in cache, and no
        fresh memory is faulted in per call), the same sum as the log-space form up to
        rounding in the last bits."""
        c = cand.u.shape[0]
        out = np.empty((len(self.numeric), c))
        buf = np.empty((c, self.n_kernels))
        for i, j in enumerate(self.numeric):
            if j in cand.cells:  # a stepped coordinate: the mass of its whole cell
                terms = self._cell_log_mass(i, *cand.cells[j])
                np.maximum(terms, _EXP_FLOOR, out=terms)
                np.exp(terms, out=terms)
                out[i] = terms @ self.weights
                continue
            np.subtract(cand.u[:, j, None], self.mus[i], out=buf)
            buf *= self._scale[i]
            np.square(buf, out=buf)
            np.minimum(buf, -_EXP_FLOOR, out=buf)  # exp() of underflows is ~5x slower
            np.negative(buf, out=buf)
            np.exp(buf, out=buf)
            out[i] = buf @ self._coef[i]
        return out

    def log_density(self, cand: Candidates) -> np.ndarray:
        """(c,) log density of the joint mixture (multivariate TPE)."""
        total = np.tile(self.log_weights, (cand.u.shape[0], 1))
        if self.numeric:
            total += self._numeric_log_terms(cand).sum(axis=0)
        for j, probs in self.probs.items():
            total += np.log(probs[:, cand.categories[j]].T)
        return _logsumexp(total)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    peak = a.max(axis=1)
    a -= peak[:, None]
    np.maximum(a, _EXP_FLOOR, out=a)  # terms below e^-700 of the largest change nothing
    np.exp(a, out=a)
    return peak + np.log(a.sum(axis=1))


def _neighbour_bandwidths(mus: np.ndarray) -> np.ndarray:
    """Per row of (m, n) centres: the distance to the farther of the two neighbouring centres
    (the cube's ends 0 and 1 as outer neighbours); the first and last centres use their inner
    neighbour only. Ties keep numpy's default sort order, as optuna's do."""
    order = np.argsort(mus, axis=1)
    sigmas = sorted_bandwidths(np.take_along_axis(mus, order, axis=1))
    out = np.empty_like(sigmas)
    np.put_along_axis(out, order, sigmas, axis=1)
    return out


def sorted_bandwidths(sorted_mus: np.ndarray) -> np.ndarray:
    """:func:`_neighbour_bandwidths` of (m, n) centres already sorted along each row, in that
    order."""
    m, n = sorted_mus.shape
    s = np.hstack([np.zeros((m, 1)), sorted_mus, np.ones((m, 1))])
    sigmas = np.maximum(s[:, 1:-1] - s[:, :-2], s[:, 2:] - s[:, 1:-1])
    if n >= 2:
        sigmas[:, 0] = s[:, 2] - s[:, 1]
        sigmas[:, -1] = s[:, -2] - s[:, -3]
    return sigmas


def _log_unit_mass(mus: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """log of each kernel's mass on [0, 1]; 0 for kernels well inside (most of them), which
    spares the costly normal CDF."""
    out = np.zeros_like(mus)
    near = (mus < 8.0 * sigmas) | (1.0 - mus < 8.0 * sigmas)
    if near.any():
        m, s = mus[near], sigmas[near]
        out[near] = np.log(ndtr((1.0 - m) / s) - ndtr(-m / s))
    return out


def _categorical_kernels(dim: Dim, col: np.ndarray, prior_weight: float) -> np.ndarray:
    """(n+1, C) row-stochastic kernels: each observation's category plus smoothing, and a
    uniform prior row."""
    n_choices = len(dim.choices)
    n_kernels = len(col) + 1
    probs = np.full((n_kernels, n_choices), prior_weight / n_kernels)
    if len(col):
        probs[np.arange(len(col)), dim.index_of(col)] += 1.0
    return probs / probs.sum(axis=1, keepdims=True)


# -- the TPE step -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TpeConfig:
    n_startup_trials: int
    n_candidates: int
    prior_weight: float
    gamma: float | None
    multivariate: bool
    good_size: Callable[[int], int] | None = None
    """Overrides the good group's size rule (:func:`n_below`); MOTPE's is uncapped."""


def split(losses: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (ascending) of the ``k`` lowest losses, ties going to the earlier trial (as a
    stable sort would), and of the others; O(n) by partition instead of a full sort."""
    if k >= len(losses):
        return np.arange(len(losses)), np.arange(0)
    kth = np.partition(losses, k - 1)[k - 1]
    good = losses < kth
    good[np.flatnonzero(losses == kth)[: k - int(good.sum())]] = True
    return np.flatnonzero(good), np.flatnonzero(~good)


class PerDimensionParzen:
    """Univariate TPE's mixtures for a conditional space: one :class:`ParzenEstimator` per
    coordinate, fitted on the rows where that coordinate is set (not NaN)."""

    def __init__(
        self,
        x: np.ndarray,
        dims: Sequence[Dim],
        *,
        prior_weight: float,
        weights: np.ndarray | None = None,
    ) -> None:
        self.dims = dims
        self.parts = []
        for j, dim in enumerate(dims):
            col = x[:, j]
            active = np.isfinite(col)
            self.parts.append(
                ParzenEstimator(
                    col[active][:, None],
                    [dim],
                    prior_weight=prior_weight,
                    multivariate=False,
                    weights=None if weights is None else weights[active],
                )
            )

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.hstack([part.sample(rng, size) for part in self.parts])

    def log_density_per_dim(self, cand: Candidates) -> np.ndarray:
        out = np.empty(cand.u.shape)
        for j, part in enumerate(self.parts):
            one = Candidates(
                cand.u[:, j : j + 1],
                {0: cand.cells[j]} if j in cand.cells else {},
                {0: cand.categories[j]} if j in cand.categories else {},
            )
            out[:, j] = part.log_density_per_dim(one)[:, 0]
        return out


def feasibility_split(
    losses: np.ndarray, violations: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`split` with constraints: feasible trials (violation 0) first by loss, then the
    infeasible ones by violation; the first ``k`` of that order are the good group."""
    feasible = violations <= 0
    primary = np.where(feasible, 0.0, violations)
    secondary = np.where(feasible, losses, 0.0)
    order = np.lexsort((np.arange(len(losses)), secondary, primary))
    return np.sort(order[:k]), np.sort(order[k:])


def tpe_suggest(
    encoding: SpaceEncoding,
    history: History,
    count: int,
    rng: np.random.Generator,
    config: TpeConfig,
    startup: Callable[[int], list[Assignment]] | None = None,
    below_weights: Callable[[np.ndarray], np.ndarray] | None = None,
    columns: SortedColumns | None = None,
) -> list[Assignment]:
    """``count`` distinct assignments by TPE with a constant liar (see the module docstring).

    Before ``n_startup_trials`` trials completed, ``startup(count)`` draws them from the prior
    (default: ``rng``'s draws). ``below_weights(indices)`` gives the good group's kernel
    weights (default: the recency ramp); MOTPE weighs by hypervolume contribution.
    ``columns``, the caller's per-experiment sorted coordinates, lets univariate TPE on an
    unconditional space build a long bad mixture (``SORTED_FROM`` kernels) from them
    (:mod:`suggestion.algorithms._sorted_parzen`: the same mixture, updated in O(n) instead
    of sorted in O(n log n), scored over windows of nearby kernels); the result does not
    depend on what they held before."""
    x, losses = history.x_completed, history.losses
    n = len(losses)
    if n < max(config.n_startup_trials, 1):
        if startup is not None:
            return startup(count)
        return fill_distinct(encoding, count, history.keys, rng)
    dims = encoding.dims
    k = n_below(n, config.gamma) if config.good_size is None else config.good_size(n)
    if history.constrained:
        below, above = feasibility_split(losses, history.violations, k)
    else:
        below, above = split(losses, k)

    def mixture(
        points: np.ndarray, weights: np.ndarray | None = None
    ) -> ParzenEstimator | PerDimensionParzen:
        if encoding.conditional and not config.multivariate:
            return PerDimensionParzen(
                points, dims, prior_weight=config.prior_weight, weights=weights
            )
        return ParzenEstimator(
            points,
            dims,
            prior_weight=config.prior_weight,
            multivariate=config.multivariate,
            weights=weights,
        )

    good = mixture(x[below], None if below_weights is None else below_weights(below))
    numeric = [j for j, d in enumerate(dims) if not d.is_list]
    if (
        columns is not None
        and numeric
        and len(above) + len(history.x_pending) + 1 >= SORTED_FROM
        and not config.multivariate
        and not encoding.conditional
    ):
        columns.update(history.rows, x[:, numeric])
        below_mask = np.zeros(n, dtype=bool)
        below_mask[below] = True

        def bad_mixture(extra: np.ndarray) -> ParzenEstimator | PerDimensionParzen | SortedParzen:
            assert columns is not None
            return columns.mixture(dims, x, below_mask, extra, prior_weight=config.prior_weight)
    else:

        def bad_mixture(extra: np.ndarray) -> ParzenEstimator | PerDimensionParzen | SortedParzen:
            return mixture(np.vstack([x[above], extra]))

    extra = history.x_pending  # the constant liar: pending trials and the batch's picks
    chosen: list[Assignment] = []
    taken: set[Key] = set()
    for _ in range(count):
        bad = bad_mixture(extra)
        pick = _best_candidate(encoding, good, bad, rng, config, history.keys, taken)
        if pick is None:
            break
        chosen.append(pick)
        taken.add(encoding.key(pick))
        extra = np.vstack([extra, encoding.encode(pick)[None, :]])
    if len(chosen) < count:  # the good mixture keeps proposing used points: widen the search
        chosen = fill_distinct(
            encoding,
            count,
            history.keys,
            rng,
            chosen,
            propose=lambda m: good.sample(rng, max(m, config.n_candidates)),
        )
    return chosen


def _best_candidate(
    encoding: SpaceEncoding,
    good: ParzenEstimator | PerDimensionParzen,
    bad: ParzenEstimator | PerDimensionParzen | SortedParzen,
    rng: np.random.Generator,
    config: TpeConfig,
    seen: Collection[Key],
    taken: set[Key],
) -> Assignment | None:
    """The unused candidate with the best ``log l - log g``, or None if all are used."""
    cand = prepare(encoding.dims, good.sample(rng, config.n_candidates))
    if config.multivariate:
        assert isinstance(good, ParzenEstimator) and isinstance(bad, ParzenEstimator)
        scores = good.log_density(cand) - bad.log_density(cand)
        ranking = np.argsort(-scores, kind="stable")
        first = encoding.decode(cand.u[ranking[0]])
    else:
        per_dim = good.log_density_per_dim(cand) - bad.log_density_per_dim(cand)
        best = per_dim.argmax(axis=0)  # each coordinate picks its own best candidate
        first = encoding.decode(cand.u[best, np.arange(len(best))])
        ranking = np.argsort(-per_dim.sum(axis=1), kind="stable")
    key = encoding.key(first)
    if key not in seen and key not in taken:
        return first
    for i in ranking:
        a = encoding.decode(cand.u[i])
        key = encoding.key(a)
        if key not in seen and key not in taken:
            return a
    return None
