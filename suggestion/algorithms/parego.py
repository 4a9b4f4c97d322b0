"""``parego``: ParEGO (Knowles 2006), multi-objective Bayesian optimisation over tunery's GP.

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. Each
request takes a weight vector ``w`` on the simplex (point number ``len(trials)`` of a
low-discrepancy sequence shifted by the experiment's seed, so restarts agree and successive
trials cover the simplex evenly), scores every completed trial by the augmented Chebyshev
scalarisation ``max_j w_j z_j + rho * sum_j w_j z_j`` of its losses ``z`` normalised between
the best value seen (0) and the nadir of the non-dominated trials (1), and hands that
single-objective request to ``bayesianoptimization`` (the Matérn GP of ``_gp`` with log-EI,
Sobol initial design, Kriging-believer batches; a batch shares one ``w``). Varying ``w`` from
trial to trial spreads the search along the Pareto front.

Settings: those of ``bayesianoptimization`` (``base_estimator``, ``n_initial_points``,
``acq_func``, ``acq_optimizer``, ``random_state``) plus ``rho`` (0.05).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from suggestion.algorithms._multi import loss_matrix, scalar_request
from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    InvalidSettingsError,
    SuggestRequest,
)
from suggestion.algorithms.bayesian import BayesianOptimization, BayesianOptimizationSettings
from tunery.pareto import nondominated_mask
from tunery.space import Assignment, SearchSpace
from tunery.trials import Objective

_WEIGHT_SALT = 0x9A2E60


@dataclass(frozen=True)
class ParegoSettings(BayesianOptimizationSettings):
    rho: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.rho < 1:
            raise InvalidSettingsError("rho should be in the range of [0, 1)")


def chebyshev(z: np.ndarray, weights: np.ndarray, rho: float) -> np.ndarray:
    """Augmented Chebyshev scalarisation of normalised losses (lower is better)."""
    wz = z * weights
    return wz.max(axis=1) + rho * wz.sum(axis=1)


def front_normalised(y: np.ndarray) -> np.ndarray:
    """Losses scaled per objective so that the best value seen maps to 0 and the worst value
    among the non-dominated trials (the front's nadir) to 1; dominated trials may exceed 1.

    Scaling by the whole observed range instead lets the startup's poor trials set the scale:
    an objective whose random values spread ten times wider than along the front is squeezed
    near 0 there, and most weight vectors then favour one end of the front."""
    lo = y.min(axis=0)
    hi = y[nondominated_mask(y)].max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (y - lo) / span


def simplex_weights(seed: int, index: int, m: int) -> np.ndarray:
    """The weight vector of the trial at ``index``: point ``index`` of a Kronecker
    (generalised golden ratio, Roberts 2018) sequence in ``[0, 1)^(m-1)`` shifted by the seed,
    mapped uniformly onto the simplex (the gaps between the sorted coordinates). Successive
    trials so cover the simplex evenly, ends included, where independent draws leave gaps."""
    if m == 1:
        return np.ones(1)
    d = m - 1
    phi = 2.0
    for _ in range(50):  # the positive root of x^(d+1) = x + 1
        phi = (1.0 + phi) ** (1.0 / (d + 1))
    alpha = phi ** -np.arange(1.0, d + 1)
    shift = np.random.default_rng([seed, _WEIGHT_SALT]).random(d)
    u = np.sort((shift + index * alpha) % 1.0)
    return np.diff(np.concatenate([[0.0], u, [1.0]]))


class Parego(Algorithm):
    """ParEGO: a random scalarisation per request, optimised by the GP."""

    name = "parego"
    settings_type: ClassVar[type[AlgorithmSettings]] = ParegoSettings
    capabilities: ClassVar[frozenset[str]] = frozenset({"multi-objective"})

    def __init__(self, settings: AlgorithmSettings | None = None) -> None:
        super().__init__(settings)
        s = self.settings
        assert isinstance(s, ParegoSettings)
        self._gp = BayesianOptimization(
            BayesianOptimizationSettings(
                random_state=s.random_state,
                base_estimator=s.base_estimator,
                n_initial_points=s.n_initial_points,
                acq_func=s.acq_func,
                acq_optimizer=s.acq_optimizer,
            )
        )

    @classmethod
    def validate(
        cls,
        space: SearchSpace,
        objective: Objective,
        settings: AlgorithmSettings,
        max_trial_count: int | None = None,
    ) -> None:
        BayesianOptimization.validate(space, objective, settings, max_trial_count)

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        trials, y = loss_matrix(request)
        m = y.shape[1]
        weights = simplex_weights(self.seed(request), len(request.trials), m)
        rho = self.settings.rho  # type: ignore[attr-defined]
        scores = chebyshev(front_normalised(y), weights, rho) if len(y) else np.empty(0)
        return self._gp.suggest(scalar_request(request, trials, scores))
