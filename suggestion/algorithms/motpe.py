"""``motpe``: TPE for several objectives (multi-objective TPE, Ozaki et al. 2020/2022).

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. TPE needs
only an order of the completed trials to split them into a good and a bad group; MOTPE's order
is Pareto dominance: trials are ranked by non-dominated front, and within the front that the
good group's cut-off splits, by hypervolume contribution (two objectives; crowding distance
for more), computed on losses normalised to the observed range. The ranked request is handed
to the ``multivariate-tpe`` engine (or ``tpe`` with ``multivariate: false``), so startup,
candidates, constant liar for pending trials and distinctness are TPE's own.

Settings: ``n_startup_trials`` (10), ``n_ei_candidates`` (24), ``multivariate`` (true),
``random_state``. A single-objective experiment works too (the order is then the objective's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from suggestion.algorithms._multi import loss_matrix, normalised, scalar_request
from suggestion.algorithms._parzen import n_below
from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    InvalidSettingsError,
    SuggestRequest,
)
from suggestion.algorithms.multivariate_tpe import MultivariateTpe, MultivariateTpeSettings
from suggestion.algorithms.tpe import DEFAULT_EI_CANDIDATES, DEFAULT_STARTUP_TRIALS, Tpe
from tunery.pareto import crowding_distance, hypervolume_contributions, nondominated_ranks
from tunery.space import Assignment


@dataclass(frozen=True)
class MotpeSettings(AlgorithmSettings):
    n_startup_trials: int = DEFAULT_STARTUP_TRIALS
    n_ei_candidates: int = DEFAULT_EI_CANDIDATES
    multivariate: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_startup_trials < 0:
            raise InvalidSettingsError("n_startup_trials should be great or equal than zero")
        if self.n_ei_candidates < 0:
            raise InvalidSettingsError("n_ei_candidates should be great or equal than zero")


def pareto_scores(y: np.ndarray, n_good: int) -> np.ndarray:
    """A score per row of the loss matrix ``y`` whose ``n_good`` lowest are MOTPE's good
    group: the front index, plus a tie-break in [0, 1) inside the front the cut-off splits."""
    ranks = nondominated_ranks(y)
    scores = ranks.astype(float) + 0.5
    if len(y) == 0:
        return scores
    counts = np.bincount(ranks)
    before = np.concatenate([[0], np.cumsum(counts)])
    cut = int(np.searchsorted(before, n_good, side="right")) - 1  # the front the cut falls in
    if cut >= len(counts) or before[cut] == n_good:
        return scores
    members = np.flatnonzero(ranks == cut)
    z = normalised(y)[members]
    if y.shape[1] == 2:
        merit = hypervolume_contributions(z, np.full(2, 1.1))
    else:
        merit = crowding_distance(z)
    order = np.argsort(-merit, kind="stable")
    scores[members[order]] = cut + np.arange(len(members)) / len(members)
    return scores


class Motpe(Algorithm):
    """Multi-objective TPE: Pareto ranking fed to the TPE engine."""

    name = "motpe"
    settings_type: ClassVar[type[AlgorithmSettings]] = MotpeSettings
    capabilities: ClassVar[frozenset[str]] = frozenset({"multi-objective"})

    def __init__(self, settings: AlgorithmSettings | None = None) -> None:
        super().__init__(settings)
        s = self.settings
        assert isinstance(s, MotpeSettings)
        inner = MultivariateTpeSettings(
            random_state=s.random_state,
            n_startup_trials=s.n_startup_trials,
            n_ei_candidates=s.n_ei_candidates,
        )
        self._tpe: Tpe = MultivariateTpe(inner) if s.multivariate else Tpe(inner)

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        trials, y = loss_matrix(request)
        scores = pareto_scores(y, n_below(len(trials), None))
        return self._tpe.suggest(scalar_request(request, trials, scores))
