"""``tpe``: Tree-structured Parzen Estimator, univariate (one mixture per parameter).

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. The model
is :mod:`suggestion.algorithms._parzen` (optuna's TPE rules in compact numpy, chosen over
optuna and hyperopt by measurement, see docs/benchmarks.md). Settings are the union of
Katib's hyperopt ``tpe`` (``gamma``, ``prior_weight``, ``n_EI_candidates``, ``random_state``)
and optuna ``tpe`` (``n_startup_trials``, ``n_ei_candidates``, ``random_state``) names.

Stateless by contract: the output is a pure function of (settings, seed, request); the
instance only caches per-trial encodings, so N known trials and k new ones cost O(k) encoding,
and (univariate) each coordinate of the completed trials in sorted order, so a long bad
mixture is built in O(n) instead of a sort and scored over windows of nearby kernels
(:mod:`suggestion.algorithms._sorted_parzen`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from suggestion.algorithms._distinct import indexed_prior, request_rng
from suggestion.algorithms._encoding import encoding_for
from suggestion.algorithms._history import TrialCache
from suggestion.algorithms._parzen import TpeConfig, tpe_suggest
from suggestion.algorithms._sorted_parzen import SortedColumns
from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    InvalidSettingsError,
    SuggestRequest,
)
from tunery.space import Assignment

DEFAULT_STARTUP_TRIALS = 10
DEFAULT_EI_CANDIDATES = 24


@dataclass(frozen=True)
class TpeSettings(AlgorithmSettings):
    """``gamma`` in (0, 1) switches the good-group size to hyperopt's ``ceil(gamma*sqrt(n))``
    (default: optuna's ``ceil(0.1*n)``, both capped at 25). ``n_EI_candidates`` (hyperopt) and
    ``n_ei_candidates`` (optuna) name the same thing; 0 means 1. ``n_startup_trials`` completed
    trials are sampled from the prior before the model starts."""

    gamma: float | None = None
    prior_weight: float = 1.0
    n_EI_candidates: int | None = None
    n_ei_candidates: int | None = None
    n_startup_trials: int = DEFAULT_STARTUP_TRIALS

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gamma is not None and not 0 < self.gamma < 1:
            raise InvalidSettingsError("gamma should be in the range of (0, 1)")
        if not self.prior_weight > 0:
            raise InvalidSettingsError("prior_weight should be great than zero")
        if self.n_EI_candidates is not None and not self.n_EI_candidates > 0:
            raise InvalidSettingsError("n_EI_candidates should be great than zero")
        if self.n_ei_candidates is not None and self.n_ei_candidates < 0:
            raise InvalidSettingsError("n_ei_candidates should be great or equal than zero")
        if self.n_startup_trials < 0:
            raise InvalidSettingsError("n_startup_trials should be great or equal than zero")
        if (
            self.n_EI_candidates is not None
            and self.n_ei_candidates is not None
            and self.n_EI_candidates != max(self.n_ei_candidates, 1)
        ):
            raise InvalidSettingsError(
                f"n_EI_candidates ({self.n_EI_candidates}) and n_ei_candidates "
                f"({self.n_ei_candidates}) disagree; set one of them"
            )

    @property
    def candidates(self) -> int:
        for value in (self.n_EI_candidates, self.n_ei_candidates):
            if value is not None:
                return max(value, 1)
        return DEFAULT_EI_CANDIDATES


class Tpe(Algorithm):
    """Univariate TPE with a constant liar for pending trials and batches."""

    name = "tpe"
    settings_type: ClassVar[type[AlgorithmSettings]] = TpeSettings
    multivariate: ClassVar[bool] = False

    def __init__(self, settings: AlgorithmSettings | None = None) -> None:
        super().__init__(settings)
        self._cache: dict[str, object] = {}
        self._trials: TrialCache | None = None
        self._columns = SortedColumns()

    def _config(self) -> TpeConfig:
        s = self.settings
        return TpeConfig(
            n_startup_trials=getattr(s, "n_startup_trials", DEFAULT_STARTUP_TRIALS),
            n_candidates=getattr(s, "candidates", DEFAULT_EI_CANDIDATES),
            prior_weight=getattr(s, "prior_weight", 1.0),
            gamma=getattr(s, "gamma", None),
            multivariate=self.multivariate,
        )

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        encoding, changed = encoding_for(self._cache, request.space)
        if changed or self._trials is None:
            self._trials = TrialCache(encoding)
            self._columns = SortedColumns()
        history = self._trials.history(request)
        seed = self.seed(request)
        rng = request_rng(seed, request)
        first = len(request.trials)

        def startup(count: int) -> list[Assignment]:  # a function of (seed, trial index)
            return indexed_prior(encoding, count, history.keys, seed, first)

        return tpe_suggest(
            encoding,
            history,
            request.count,
            rng,
            self._config(),
            startup,
            columns=self._columns,
        )
