"""``parego``: ParEGO (Knowles 2006), multi-objective Bayesian optimisation over tunery's GP.

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. Each
request draws a weight vector ``w`` uniformly from the simplex (seeded by the experiment's
seed and the number of trials, so restarts agree), scores every completed trial by the
augmented Chebyshev scalarisation ``max_j w_j z_j + rho * sum_j w_j z_j`` of its losses
``z`` normalised to the observed range, and hands that single-objective request to
``bayesianoptimization`` (the Matérn GP of ``_gp`` with log-EI, Sobol initial design,
Kriging-believer batches). Varying ``w`` from trial to trial spreads the search along the
Pareto front.

Settings: those of ``bayesianoptimization`` (``base_estimator``, ``n_initial_points``,
``acq_func``, ``acq_optimizer``, ``random_state``) plus ``rho`` (0.05).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from suggestion.algorithms._distinct import request_rng
from suggestion.algorithms._multi import loss_matrix, normalised, scalar_request
from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    InvalidSettingsError,
    SuggestRequest,
)
from suggestion.algorithms.bayesian import BayesianOptimization, BayesianOptimizationSettings
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
        rng = request_rng(self.seed(request), request, _WEIGHT_SALT)
        weights = rng.dirichlet(np.ones(m)) if m > 1 else np.ones(1)
        rho = self.settings.rho  # type: ignore[attr-defined]
        scores = chebyshev(normalised(y), weights, rho) if len(y) else np.empty(0)
        return self._gp.suggest(scalar_request(request, trials, scores))
