"""``sobol``: a scrambled Sobol' low-discrepancy sequence over the unit cube.

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. Uses
``scipy.stats.qmc.Sobol`` scrambled with the experiment's seed; the point index is the number
of trials so far, so the service is stateless: any server continues the same sequence. The
coordinates decode through :mod:`suggestion.algorithms._encoding` (priors, steps, lists).
Points that repeat an existing trial (possible in finite spaces) are skipped by reading further
along the sequence. Katib's sobol (goptuna) takes no settings; ``random_state`` is accepted
as the scrambling seed and is the only setting.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import qmc

from suggestion.algorithms._encoding import TrialCache, encoding_for, fill_distinct, request_rng
from suggestion.algorithms.base import Algorithm, AlgorithmSettings, SuggestRequest
from tunery.space import Assignment


class SobolSearch(Algorithm):
    """Quasi-random search along a scrambled Sobol' sequence."""

    name = "sobol"

    def __init__(self, settings: AlgorithmSettings | None = None) -> None:
        super().__init__(settings)
        self._cache: dict[str, object] = {}
        self._trials: TrialCache | None = None

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        encoding, changed = encoding_for(self._cache, request.space)
        if changed or self._trials is None:
            self._trials = TrialCache(encoding)
        keys = self._trials.keys(request)
        seed = self.seed(request)
        engine = qmc.Sobol(d=len(encoding), scramble=True, seed=np.random.default_rng(seed))
        if request.trials:
            engine.fast_forward(len(request.trials))

        def propose(n: int) -> np.ndarray:
            with warnings.catch_warnings():  # balance warnings: we draw point by point
                warnings.simplefilter("ignore", UserWarning)
                return engine.random(n)

        chosen = fill_distinct(
            encoding, request.count, keys, request_rng(seed, request), propose=propose
        )
        return chosen
