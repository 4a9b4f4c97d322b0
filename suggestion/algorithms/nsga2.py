"""``nsga2``: NSGA-II (Deb et al. 2002), an elitist evolutionary multi-objective algorithm.

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. Stateless
by contract, so it runs as a steady-state NSGA-II over the request's history: the first
``population_size`` trials are drawn from the prior; after that the parents are the
``population_size`` best completed trials by NSGA-II's survival order (non-dominated front,
then crowding distance), and each new trial is a child of two parents picked by binary
tournaments in that order. Variation is on the unit-cube encoding (``_encoding``): simulated
binary crossover (SBX, ``crossover_eta``) with probability ``crossover_prob`` and polynomial
mutation (``mutation_eta``) of each numeric coordinate with probability ``mutation_prob``
(default 1/d); list parameters (discrete, categorical) take either parent's value (uniform
crossover) and are redrawn from the prior with the same mutation probability. Every child is
distinct from the history and its batch (duplicates are mutated again, then drawn at random).

Settings: ``population_size`` (20), ``crossover_prob`` (0.9), ``crossover_eta`` (15),
``mutation_eta`` (20), ``mutation_prob`` (0 = 1/d), ``random_state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from suggestion.algorithms._distinct import fill_distinct, indexed_prior, request_rng
from suggestion.algorithms._encoding import SpaceEncoding, encoding_for
from suggestion.algorithms._history import TrialCache
from suggestion.algorithms._multi import loss_matrix
from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    InvalidSettingsError,
    SuggestRequest,
    refuse_conditional,
)
from tunery.pareto import crowding_distance, nondominated_ranks
from tunery.space import Assignment, SearchSpace
from tunery.trials import Objective


@dataclass(frozen=True)
class Nsga2Settings(AlgorithmSettings):
    population_size: int = 20
    crossover_prob: float = 0.9
    crossover_eta: float = 15.0
    mutation_eta: float = 20.0
    mutation_prob: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.population_size < 2:
            raise InvalidSettingsError("population_size should be at least 2")
        if not 0 <= self.crossover_prob <= 1:
            raise InvalidSettingsError("crossover_prob should be in the range of [0, 1]")
        if not 0 <= self.mutation_prob <= 1:
            raise InvalidSettingsError("mutation_prob should be in the range of [0, 1]")
        if self.crossover_eta <= 0 or self.mutation_eta <= 0:
            raise InvalidSettingsError("crossover_eta and mutation_eta should be greater than 0")


def survival_order(y: np.ndarray, enough: int | None = None) -> np.ndarray:
    """Row indices of the loss matrix best first: front, then larger crowding distance (with
    ``enough``, only the first ``enough`` are exact; the rest follow in any order)."""
    ranks = nondominated_ranks(y, enough)
    crowd = np.zeros(len(y))
    for r in np.unique(ranks):
        members = np.flatnonzero(ranks == r)
        crowd[members] = crowding_distance(y[members])
    return np.lexsort((-crowd, ranks))


def sbx(
    a: np.ndarray, b: np.ndarray, eta: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Simulated binary crossover of two unit-cube points (each coordinate with prob. 1/2)."""
    u = rng.random(len(a))
    beta = np.where(u <= 0.5, (2 * u) ** (1 / (eta + 1)), (1 / (2 * (1 - u))) ** (1 / (eta + 1)))
    swap = rng.random(len(a)) < 0.5
    c1 = 0.5 * ((1 + beta) * a + (1 - beta) * b)
    c2 = 0.5 * ((1 - beta) * a + (1 + beta) * b)
    c1, c2 = np.where(swap, c2, c1), np.where(swap, c1, c2)
    same = rng.random(len(a)) < 0.5  # coordinates left as the parents had them
    c1, c2 = np.where(same, a, c1), np.where(same, b, c2)
    return np.clip(c1, 0, 1), np.clip(c2, 0, 1)


def polynomial_mutation(
    x: np.ndarray, prob: float, eta: float, rng: np.random.Generator
) -> np.ndarray:
    """Deb's bounded polynomial mutation on the unit cube."""
    out = x.copy()
    hit = rng.random(len(x)) < prob
    u = rng.random(len(x))
    lo, hi = x, 1 - x
    power = 1 / (eta + 1)
    left = (2 * u + (1 - 2 * u) * (1 - lo) ** (eta + 1)) ** power - 1
    right = 1 - (2 * (1 - u) + 2 * (u - 0.5) * (1 - hi) ** (eta + 1)) ** power
    delta = np.where(u < 0.5, left, right)
    out[hit] = np.clip(x[hit] + delta[hit], 0, 1)
    return out


class Nsga2(Algorithm):
    """Steady-state NSGA-II on the unit-cube encoding."""

    name = "nsga2"
    settings_type: ClassVar[type[AlgorithmSettings]] = Nsga2Settings
    capabilities: ClassVar[frozenset[str]] = frozenset({"multi-objective"})

    settings: Nsga2Settings

    @classmethod
    def validate(
        cls,
        space: SearchSpace,
        objective: Objective,
        settings: AlgorithmSettings,
        max_trial_count: int | None = None,
    ) -> None:
        """Conditional spaces are refused: crossover mixes fixed-length genomes."""
        refuse_conditional(cls.name, space, "use motpe or parego")

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
        s = self.settings
        trials, y = loss_matrix(request)
        if len(trials) < s.population_size:
            return indexed_prior(encoding, request.count, keys, seed, len(request.trials))
        order = survival_order(y, s.population_size)[: s.population_size]
        parents = np.array([encoding.encode(trials[i].assignment) for i in order])
        rng = request_rng(seed, request)
        return fill_distinct(
            encoding,
            request.count,
            keys,
            rng,
            propose=lambda n: self._children(encoding, parents, n, rng),
        )

    def _children(
        self, encoding: SpaceEncoding, parents: np.ndarray, n: int, rng: np.random.Generator
    ) -> list[np.ndarray]:
        s = self.settings
        d = len(encoding)
        lists = np.array([dim.is_list for dim in encoding.dims])
        p_mut = s.mutation_prob or 1.0 / d
        out: list[np.ndarray] = []
        while len(out) < n:
            # binary tournaments: parents are sorted best first, so the lower index wins
            a = parents[rng.integers(len(parents), size=2).min()]
            b = parents[rng.integers(len(parents), size=2).min()]
            if rng.random() < s.crossover_prob:
                c1, c2 = sbx(a, b, s.crossover_eta, rng)
                pick = rng.random(d) < 0.5
                c1 = np.where(lists, np.where(pick, a, b), c1)
                c2 = np.where(lists, np.where(pick, b, a), c2)
            else:
                c1, c2 = a.copy(), b.copy()
            for child in (c1, c2):
                child = polynomial_mutation(child, p_mut, s.mutation_eta, rng)
                redraw = lists & (rng.random(d) < p_mut)
                child[redraw] = rng.random(int(redraw.sum()))
                out.append(child)
        return out[:n]
