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

Ints and stepped doubles are scored by the probability mass of their whole cell, so the
discrete kernels match the grid exactly; numeric coordinates are continuous otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from suggestion.algorithms._encoding import Dim, History, Key, SpaceEncoding, fill_distinct
from tunery.space import Assignment

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_TINY = 1e-300
_FLAT_RECENT = 25


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
    """Unit-cube points prepared for scoring: per coordinate, the point (continuous), the
    bounds of its cell (stepped numeric) or its category index (lists)."""

    u: np.ndarray  # (m, d)
    inputs: tuple[np.ndarray | tuple[np.ndarray, np.ndarray], ...]


def prepare(dims: Sequence[Dim], u: np.ndarray) -> Candidates:
    inputs: list[np.ndarray | tuple[np.ndarray, np.ndarray]] = []
    for j, dim in enumerate(dims):
        col = u[:, j]
        if dim.is_list:
            inputs.append(dim.index_of(col))
        elif dim.is_stepped:
            inputs.append(dim.cell_bounds(col))
        else:
            inputs.append(col)
    return Candidates(u, tuple(inputs))


class ParzenEstimator:
    """A kernel mixture over the unit cube fitted to observations ``x`` (oldest first)."""

    def __init__(
        self,
        x: np.ndarray,
        dims: Sequence[Dim],
        *,
        prior_weight: float,
        multivariate: bool,
    ) -> None:
        n = x.shape[0]
        self.dims = dims
        self.multivariate = multivariate
        weights = np.append(default_weights(n), prior_weight)
        self.n_kernels = n + 1
        self.log_weights = np.log(weights / weights.sum())
        self.weights = weights / weights.sum()
        self._mus: list[np.ndarray | None] = []
        self._sigmas: list[np.ndarray | None] = []
        self._log_z: list[np.ndarray | None] = []
        self._probs: list[np.ndarray | None] = []
        min_sigma = 1.0 / min(100.0, 1.0 + self.n_kernels)
        for j, dim in enumerate(dims):
            col = x[:, j]
            if dim.is_list:
                self._probs.append(_categorical_kernels(dim, col, prior_weight))
                self._mus.append(None)
                self._sigmas.append(None)
                self._log_z.append(None)
                continue
            sigmas = np.clip(_neighbour_bandwidths(col), min_sigma, 1.0)
            mus = np.append(col, 0.5)
            sigmas = np.append(sigmas, 1.0)
            self._mus.append(mus)
            self._sigmas.append(sigmas)
            self._log_z.append(np.log(ndtr((1.0 - mus) / sigmas) - ndtr(-mus / sigmas)))
            self._probs.append(None)

    # -- sampling --------------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` points of the unit cube drawn from the mixture (categorical coordinates at
        their cell centres). Multivariate mixtures draw one kernel per point for every
        coordinate; univariate ones draw a kernel per coordinate."""
        d = len(self.dims)
        out = np.empty((size, d))
        shared = rng.choice(self.n_kernels, size=size, p=self.weights)
        for j in range(len(self.dims)):
            if self.multivariate:
                k = shared
            else:
                k = rng.choice(self.n_kernels, size=size, p=self.weights)
            probs = self._probs[j]
            if probs is not None:
                cum = np.cumsum(probs[k], axis=1)
                r = rng.random(size)[:, None] * cum[:, -1:]
                idx = np.minimum((cum < r).sum(axis=1), probs.shape[1] - 1)
                out[:, j] = (idx + 0.5) / probs.shape[1]
                continue
            mus, sigmas = self._mus[j][k], self._sigmas[j][k]  # type: ignore[index]
            lo, hi = ndtr(-mus / sigmas), ndtr((1.0 - mus) / sigmas)
            p = lo + rng.random(size) * (hi - lo)
            p = np.clip(p, _TINY, 1.0 - 1e-16)
            out[:, j] = np.clip(mus + sigmas * ndtri(p), 0.0, 1.0)
        return out

    # -- densities -------------------------------------------------------------------------------
    #
    # Every mixture holds the prior kernel (centre 0.5, width 1), whose density on the unit
    # interval is at least 0.24, so sums of plain (not log) densities never underflow.

    def _kernel_terms(
        self, j: int, inp: np.ndarray | tuple[np.ndarray, np.ndarray], log: bool
    ) -> np.ndarray:
        """(m, K) density (or log density) of each numeric kernel of coordinate ``j``."""
        mus, sigmas, log_z = self._mus[j], self._sigmas[j], self._log_z[j]
        assert mus is not None and sigmas is not None and log_z is not None
        if isinstance(inp, tuple):  # a cell: its probability mass
            lo = np.subtract.outer(inp[0], mus)
            lo /= sigmas
            hi = np.subtract.outer(inp[1], mus)
            hi /= sigmas
            flip = lo > 0  # use the upper tail where it is the accurate one
            mass = np.where(flip, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo))
            mass /= np.exp(log_z)
            return np.log(np.maximum(mass, _TINY)) if log else mass
        z = np.subtract.outer(inp, mus)
        z /= sigmas
        np.square(z, out=z)
        z *= -0.5
        z += -np.log(sigmas) - _LOG_SQRT_2PI - log_z
        return z if log else np.exp(z, out=z)

    def log_density_per_dim(self, cand: Candidates) -> np.ndarray:
        """(m, d) log density of each coordinate's own mixture (univariate TPE)."""
        out = np.empty(cand.u.shape)
        for j in range(len(self.dims)):
            probs = self._probs[j]
            if probs is not None:
                marginal = self.weights @ probs
                out[:, j] = np.log(marginal[cand.inputs[j]])
                continue
            out[:, j] = np.log(self._kernel_terms(j, cand.inputs[j], log=False) @ self.weights)
        return out

    def log_density(self, cand: Candidates) -> np.ndarray:
        """(m,) log density of the joint mixture (multivariate TPE)."""
        total = np.tile(self.log_weights, (cand.u.shape[0], 1))
        for j in range(len(self.dims)):
            probs = self._probs[j]
            if probs is not None:
                total += np.log(probs[:, cand.inputs[j]].T)  # type: ignore[index]
            else:
                total += self._kernel_terms(j, cand.inputs[j], log=True)
        return _logsumexp(total)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    peak = a.max(axis=1)
    a -= peak[:, None]
    np.exp(a, out=a)
    return peak + np.log(a.sum(axis=1))


def _neighbour_bandwidths(mus: np.ndarray) -> np.ndarray:
    """Distance to the farther of the two neighbours among the sorted centres (the cube's
    ends 0 and 1 as outer neighbours); the first and last centres use their inner neighbour
    only."""
    order = np.argsort(mus, kind="stable")
    s = np.concatenate([[0.0], mus[order], [1.0]])
    sigmas = np.maximum(s[1:-1] - s[:-2], s[2:] - s[1:-1])
    if len(s) >= 4:
        sigmas[0] = s[2] - s[1]
        sigmas[-1] = s[-2] - s[-3]
    out = np.empty_like(sigmas)
    out[order] = sigmas
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


def tpe_suggest(
    encoding: SpaceEncoding,
    history: History,
    count: int,
    rng: np.random.Generator,
    config: TpeConfig,
) -> list[Assignment]:
    """``count`` distinct assignments by TPE with a constant liar (see the module docstring)."""
    x, losses = history.x_completed, history.losses
    n = len(losses)
    if n < max(config.n_startup_trials, 1):
        return fill_distinct(encoding, count, history.keys, rng)
    dims = encoding.dims
    order = np.argsort(losses, kind="stable")
    k = n_below(n, config.gamma)
    below = np.sort(order[:k])
    above = np.sort(order[k:])
    good = ParzenEstimator(
        x[below], dims, prior_weight=config.prior_weight, multivariate=config.multivariate
    )
    bad_points = np.vstack([x[above], history.x_pending])
    chosen: list[Assignment] = []
    taken: set[Key] = set()
    for _ in range(count):
        bad = ParzenEstimator(
            bad_points, dims, prior_weight=config.prior_weight, multivariate=config.multivariate
        )
        pick = _best_candidate(encoding, good, bad, rng, config, history.keys, taken)
        if pick is None:
            break
        chosen.append(pick)
        taken.add(encoding.key(pick))
        bad_points = np.vstack([bad_points, encoding.encode(pick)[None, :]])
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
    good: ParzenEstimator,
    bad: ParzenEstimator,
    rng: np.random.Generator,
    config: TpeConfig,
    seen: Collection[Key],
    taken: set[Key],
) -> Assignment | None:
    """The unused candidate with the best ``log l - log g``, or None if all are used."""
    cand = prepare(encoding.dims, good.sample(rng, config.n_candidates))
    if config.multivariate:
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
