"""``random``: independent samples from each parameter's prior distribution.

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. Draws
uniform points of the unit cube (:mod:`suggestion.algorithms._encoding`, whose coordinates
encode uniform/log/normal priors and steps); trial ``i`` is drawn from a numpy Generator
seeded with ``(random_state, i)``, so the output is a pure function of the request, a
restarted server continues exactly where the old one was, and the trials do not depend on how
parallel requests were batched. Repeats of existing trials
(pending included) and within the batch are rejected and redrawn; a finite space that runs
out raises :class:`SpaceExhaustedError`. Setting: ``random_state``.
"""

from __future__ import annotations

from suggestion.algorithms._distinct import indexed_prior
from suggestion.algorithms._encoding import encoding_for
from suggestion.algorithms._history import TrialCache
from suggestion.algorithms.base import Algorithm, AlgorithmSettings, SuggestRequest
from tunery.space import Assignment


class RandomSearch(Algorithm):
    """Random search over the priors."""

    name = "random"

    def __init__(self, settings: AlgorithmSettings | None = None) -> None:
        super().__init__(settings)
        self._cache: dict[str, object] = {}
        self._trials: TrialCache | None = None

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        encoding, changed = encoding_for(self._cache, request.space)
        if changed or self._trials is None:
            self._trials = TrialCache(encoding)
        keys = self._trials.keys(request)
        return indexed_prior(
            encoding, request.count, keys, self.seed(request), len(request.trials)
        )
