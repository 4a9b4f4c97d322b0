"""``multivariate-tpe``: TPE with one joint mixture over all parameters.

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. Same
engine as ``tpe`` (:mod:`suggestion.algorithms._parzen`) with optuna's multivariate rules: a
kernel is drawn once per candidate for every coordinate and candidates are scored by the joint
mixture, so correlated parameters are modelled together. Bandwidths are the neighbour rule of
the univariate TPE, as in optuna 5.1 (earlier optuna used Scott's rule here). Settings as Katib's
optuna service: ``n_startup_trials``, ``n_ei_candidates``, ``random_state``. A joint mixture
has no meaning for a parameter absent from some trials, so conditional spaces are refused at
validation (use ``tpe``, which models each parameter over the trials where it was active).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from suggestion.algorithms.base import (
    AlgorithmSettings,
    InvalidSettingsError,
    refuse_conditional,
)
from suggestion.algorithms.tpe import DEFAULT_EI_CANDIDATES, DEFAULT_STARTUP_TRIALS, Tpe
from tunery.space import SearchSpace
from tunery.trials import Objective


@dataclass(frozen=True)
class MultivariateTpeSettings(AlgorithmSettings):
    n_startup_trials: int = DEFAULT_STARTUP_TRIALS
    n_ei_candidates: int = DEFAULT_EI_CANDIDATES

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_startup_trials < 0:
            raise InvalidSettingsError("n_startup_trials should be great or equal than zero")
        if self.n_ei_candidates < 0:
            raise InvalidSettingsError("n_ei_candidates should be great or equal than zero")

    @property
    def candidates(self) -> int:
        return max(self.n_ei_candidates, 1)

    @property
    def prior_weight(self) -> float:
        return 1.0


class MultivariateTpe(Tpe):
    """Multivariate TPE with a constant liar for pending trials and batches."""

    name = "multivariate-tpe"
    settings_type: ClassVar[type[AlgorithmSettings]] = MultivariateTpeSettings
    multivariate: ClassVar[bool] = True

    @classmethod
    def validate(
        cls,
        space: SearchSpace,
        objective: Objective,
        settings: AlgorithmSettings,
        max_trial_count: int | None = None,
    ) -> None:
        refuse_conditional(cls.name, space, "use tpe, which models conditional parameters")
