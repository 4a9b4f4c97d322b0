"""Acquisition functions on a fitted GP and their optimisation over the encoded space.

Private helper of ``suggestion.algorithms.bayesian``. Everything maximises a score (the caller
flips minimised objectives). Acquisitions, each with an analytic gradient:

- ``LOG_EI``: log expected improvement over the best observed score, computed stably far into
  the tail (Ament et al., 2023, "Unexpected improvements to expected improvement"), so the
  optimiser still sees a slope where plain EI underflows to zero;
- ``LOG_PI``: log probability of improvement;
- ``UCB``: mean + kappa * std (scikit-optimize's LCB for a maximised score).

Constraints (Gardner et al., 2014, as optuna's GPSampler): each constraint has its own GP and
the acquisition adds ``log P(c <= 0)`` of every one (its probability of feasibility); while no
trial is feasible the acquisition is that log probability alone.

:func:`rank_candidates` evaluates a batch of quasi-random and incumbent-perturbed candidates
(every feasible point when the space is small), refines the best few by L-BFGS-B on the
relaxed columns alternated with a value-by-value search of the enumerated ones, and returns
snapped candidates best first, so the caller can skip any that are already taken.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.special
from scipy.stats import qmc

from suggestion.algorithms._gp import GaussianProcess
from suggestion.algorithms._gp_space import UnitCube

ENUMERATE_LIMIT = 2048
"""Finite spaces up to this many points are scored exhaustively instead of sampled."""

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class AcquisitionKind(enum.Enum):
    LOG_EI = "logEI"
    LOG_PI = "logPI"
    UCB = "UCB"


def log_h(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log(phi(z) + z Phi(z)) (log EI of a standard normal) and its derivative in z."""
    z = np.asarray(z, dtype=float)
    value = np.empty_like(z)
    slope = np.empty_like(z)
    upper = z > -1.0
    zu = z[upper]
    cdf = 0.5 * scipy.special.erfc(-_INV_SQRT2 * zu)
    h = np.exp(-0.5 * zu * zu) * _INV_SQRT_2PI + zu * cdf
    value[upper] = np.log(h)
    slope[upper] = cdf / h
    lower = ~upper
    if lower.any():
        zl = np.maximum(z[lower], -1e6)
        mills = _SQRT_HALF_PI * scipy.special.erfcx(-_INV_SQRT2 * zl)  # Phi(z) / phi(z)
        rest = 1.0 + zl * mills  # = h / phi, in (0, 1), ~ 1/z^2 in the far tail
        far = zl < -1e3
        rest = np.where(far, 1.0 / (zl * zl), rest)
        value[lower] = -0.5 * zl * zl - _LOG_SQRT_2PI + np.log(rest)
        slope[lower] = mills / rest
    return value, slope


def log_ndtr_with_slope(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log Phi(z) and its derivative phi(z)/Phi(z)."""
    value = scipy.special.log_ndtr(z)
    return value, np.exp(-0.5 * z * z - _LOG_SQRT_2PI - value)


def acquisition_values(
    kind: AcquisitionKind, mean: np.ndarray, sigma: np.ndarray, best: float, kappa: float = 1.96
) -> np.ndarray:
    """Acquisition of predictions with mean ``mean`` and std ``sigma`` (> 0)."""
    if kind is AcquisitionKind.UCB:
        return mean + kappa * sigma
    z = (mean - best) / sigma
    if kind is AcquisitionKind.LOG_PI:
        return scipy.special.log_ndtr(z)
    return log_h(z)[0] + np.log(sigma)


@dataclass(frozen=True)
class ConstraintModel:
    """A GP of one constraint's (standardised) values; feasible below ``threshold``."""

    gp: GaussianProcess
    threshold: float

    def log_feasible(self, c: np.ndarray) -> np.ndarray:
        mean, var = self.gp.posterior(c)
        return scipy.special.log_ndtr((self.threshold - mean) / np.sqrt(var))

    def log_feasible_with_grad(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, var, dmean, dvar = self.gp.posterior_with_grad(c)
        sigma = np.sqrt(var)
        dsigma = dvar / (2.0 * sigma[:, None])
        z = (self.threshold - mean) / sigma
        dz = (-dmean - z[:, None] * dsigma) / sigma[:, None]
        value, slope = log_ndtr_with_slope(z)
        return value, slope[:, None] * dz


class Acquisition:
    """One acquisition function of one GP (fantasies included) for a maximised score, times
    the probability of feasibility of ``constraints`` (the objective term is left out when
    ``feasible_seen`` is False: nothing feasible to improve on yet)."""

    def __init__(
        self,
        gp: GaussianProcess,
        kind: AcquisitionKind,
        best: float,
        kappa: float = 1.96,
        constraints: Sequence[ConstraintModel] = (),
        feasible_seen: bool = True,
    ) -> None:
        self.gp = gp
        self.kind = kind
        self.best = best
        self.kappa = kappa
        self.constraints = tuple(constraints)
        self.use_objective = feasible_seen or not self.constraints

    def __call__(self, c: np.ndarray) -> np.ndarray:
        if self.use_objective:
            mean, var = self.gp.posterior(c)
            total = acquisition_values(self.kind, mean, np.sqrt(var), self.best, self.kappa)
        else:
            total = np.zeros(len(c))
        for model in self.constraints:
            total = total + model.log_feasible(c)
        return total

    def with_grad(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.use_objective:
            value, grad = self._objective_with_grad(c)
        else:
            value, grad = np.zeros(len(c)), np.zeros(c.shape)
        for model in self.constraints:
            v, g = model.log_feasible_with_grad(c)
            value, grad = value + v, grad + g
        return value, grad

    def _objective_with_grad(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, var, dmean, dvar = self.gp.posterior_with_grad(c)
        sigma = np.sqrt(var)
        dsigma = dvar / (2.0 * sigma[:, None])
        if self.kind is AcquisitionKind.UCB:
            return mean + self.kappa * sigma, dmean + self.kappa * dsigma
        z = (mean - self.best) / sigma
        dz = (dmean - z[:, None] * dsigma) / sigma[:, None]
        if self.kind is AcquisitionKind.LOG_PI:
            value, slope = log_ndtr_with_slope(z)
            return value, slope[:, None] * dz
        value, slope = log_h(z)
        return value + np.log(sigma), slope[:, None] * dz + dsigma / sigma[:, None]

    def evaluate(self, c: np.ndarray, chunk: int = 256) -> np.ndarray:
        return np.concatenate([self(c[i : i + chunk]) for i in range(0, len(c), chunk)])


def _gradient_refine(
    acq: Acquisition, cube: UnitCube, starts: np.ndarray, max_iter: int
) -> np.ndarray:
    """L-BFGS-B on the relaxed columns of every start at once (their sum is separable),
    preconditioned by the lengthscales (the variables are u / lengthscale)."""
    cols = np.flatnonzero(cube.relaxed)
    if cols.size == 0:
        return starts
    scale = np.sqrt(acq.gp.rho[cols])  # 1 / lengthscale
    n_starts = len(starts)
    base = starts.copy()

    def negative(z_flat: np.ndarray) -> tuple[float, np.ndarray]:
        x = base.copy()
        x[:, cols] = z_flat.reshape(n_starts, cols.size) / scale
        value, grad = acq.with_grad(x)
        return -float(np.sum(value)), -(grad[:, cols] / scale).ravel()

    z0 = (starts[:, cols] * scale).ravel()
    upper = np.tile(scale, n_starts)
    result = scipy.optimize.minimize(
        negative,
        z0,
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(np.zeros_like(upper), upper, strict=True)),
        options={"maxiter": max_iter, "gtol": 1e-7, "ftol": 1e-10},
    )
    out = base.copy()
    out[:, cols] = np.clip(result.x.reshape(n_starts, cols.size) / scale, 0.0, 1.0)
    return out


def _coordinate_search(
    acq: Acquisition, cube: UnitCube, points: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool]:
    """For each enumerated column in turn, move every point to its best value there."""
    changed = False
    points, values = points.copy(), values.copy()
    for j in cube.enumerated:
        choices = cube.columns[j].choices()
        if len(choices) < 2:
            continue
        trial = np.repeat(points, len(choices), axis=0)
        trial[:, j] = np.tile(choices, len(points))
        if cube.conditional:  # a new parent value changes which columns are imputed
            cube.impute(trial)
        scores = acq(trial).reshape(len(points), len(choices))
        best = np.argmax(scores, axis=1)
        best_scores = scores[np.arange(len(points)), best]
        better = best_scores > values + 1e-12
        if better.any():
            changed = True
            moved = trial.reshape(len(points), len(choices), -1)
            points[better] = moved[np.flatnonzero(better), best[better]]
            values[better] = best_scores[better]
    return points, values, changed


def sobol_engine(dim: int, seed: int | np.random.Generator) -> qmc.Sobol:
    """A scrambled Sobol engine (scipy >= 1.15 spells the seed ``rng``, older ``seed``)."""
    try:
        return qmc.Sobol(dim, scramble=True, rng=seed)
    except TypeError:  # pragma: no cover - scipy < 1.15
        return qmc.Sobol(dim, scramble=True, seed=seed)


def candidate_pool(
    cube: UnitCube,
    rng: np.random.Generator,
    incumbents: np.ndarray,
    n_samples: int,
) -> np.ndarray:
    """Snapped candidates: every feasible point of a small finite space, else a scrambled
    Sobol batch plus Gaussian perturbations (two scales) of the incumbents."""
    if cube.finite_size is not None and cube.finite_size <= ENUMERATE_LIMIT:
        return cube.enumerate_all()
    sobol = sobol_engine(cube.dim, rng)
    pool = [cube.from_unit(sobol.random(n_samples))]
    if len(incumbents):
        per = max(1, n_samples // (4 * len(incumbents)))
        centres = np.repeat(incumbents, per, axis=0)
        pool.append(cube.perturb(centres, 0.02, rng))
        pool.append(cube.perturb(centres, 0.1, rng))
    return np.vstack(pool)


def _diverse_top(
    acq: Acquisition, pool: np.ndarray, scores: np.ndarray, count: int, min_distance: float = 0.5
) -> np.ndarray:
    """Indices of up to ``count`` high-scoring candidates, greedily skipping any closer than
    ``min_distance`` lengthscales to one already chosen, so local searches start in
    different basins of the acquisition."""
    order = np.argsort(-scores, kind="stable")
    scaled = pool[order] * np.sqrt(acq.gp.rho)
    free = np.ones(len(order), dtype=bool)
    chosen: list[int] = []
    while len(chosen) < count and free.any():
        i = int(np.argmax(free))  # the best candidate not near a chosen one
        chosen.append(i)
        free &= np.sum((scaled - scaled[i]) ** 2, axis=1) >= min_distance**2
    return order[chosen]


def rank_candidates(
    acq: Acquisition,
    cube: UnitCube,
    rng: np.random.Generator,
    incumbents: np.ndarray,
    *,
    n_samples: int = 1024,
    n_starts: int = 8,
    local: bool = True,
    max_iter: int = 40,
) -> tuple[np.ndarray, np.ndarray]:
    """Snapped candidate points, best acquisition first, without repeats.

    Args:
        incumbents: encoded best observed points; perturbed into candidates and used as
            extra starts for the local search.
        local: refine the best candidates by L-BFGS-B / coordinate search (acq_optimizer
            lbfgs/auto) or only score samples (sampling).
    """
    pool = candidate_pool(cube, rng, incumbents, n_samples)
    scores = acq.evaluate(pool)
    exhaustive = cube.finite_size is not None and cube.finite_size <= ENUMERATE_LIMIT
    if local and not exhaustive:
        starts = pool[_diverse_top(acq, pool, scores, n_starts)]
        if len(incumbents):
            starts = np.vstack([starts, incumbents[:1]])
        start_scores = acq(starts)
        points, values = starts, start_scores
        for _ in range(3):
            refined = cube.snap(_gradient_refine(acq, cube, points, max_iter))
            refined_values = acq(refined)
            improved = refined_values > values
            points = np.where(improved[:, None], refined, points)
            values = np.where(improved, refined_values, values)
            points, values, changed = _coordinate_search(acq, cube, points, values)
            if not changed:
                break
        pool = np.vstack([points, pool])
        scores = np.concatenate([values, scores])
    order = np.argsort(-scores, kind="stable")
    pool, scores = pool[order], scores[order]
    _, first = np.unique(pool, axis=0, return_index=True)
    keep = np.sort(first)
    return pool[keep], scores[keep]
