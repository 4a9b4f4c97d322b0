"""``cmaes``: CMA-ES over the unit cube, with optional IPOP/BIPOP restarts.

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. Backed by
the ``cmaes`` package: ``CMA`` for numeric spaces, ``CatCMA`` when categorical parameters are
present (they are then modelled as categorical distributions, not as arbitrary orderings).
Ints, stepped doubles and discrete lists live in the continuous part through the shared
unit-cube encoding (:mod:`suggestion.algorithms._encoding`) and are snapped on decoding.
Conditional spaces are refused at validation (a fixed-dimension search distribution cannot be
told trials that lack a coordinate).

Stateless by contract: the optimiser is rebuilt by replaying the completed trials in request
order (the controller sends trials in creation order), telling one generation per
``population_size`` trials. Only the settled prefix is replayed, i.e. the trials before the
first one still pending, so a later completion never reorders what was told and, as in
optuna's CmaEsSampler, a generation is told once all its members are done. The instance
caches the optimiser after the prefix it has told, so a request with k new results costs
O(k) tells; any other change (reordered or removed trials) rebuilds from scratch, with the
same result. Each request samples with a generator seeded by ``(seed, number of trials)``.

Settings (Katib's): ``restart_strategy`` ``ipop`` / ``bipop`` / ``None`` (no strategy: a
converged run restarts with the same population size rather than stalling), ``sigma`` (the
initial step size in unit-cube coordinates, i.e. as a fraction of each parameter's range;
0 or unset means 1/6), ``random_state``. Needs at least two double/int parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from operator import is_
from typing import ClassVar

import numpy as np
from cmaes import CMA, CatCMA

from suggestion.algorithms._distinct import fill_distinct, request_rng
from suggestion.algorithms._encoding import SpaceEncoding, encoding_for
from suggestion.algorithms._history import History, TrialCache
from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    InvalidSettingsError,
    SuggestRequest,
    UnsupportedSpaceError,
    refuse_conditional,
)
from tunery.space import Assignment, ParameterType, SearchSpace
from tunery.trials import Objective, TrialResult

RESTART_STRATEGIES = ("ipop", "bipop")
DEFAULT_SIGMA = 1.0 / 6.0
_INCREASE_POPSIZE = 2
_MIN_POPSIZE = 4  # below this CMA's rank-mu learning rate is zero


@dataclass(frozen=True)
class CmaEsSettings(AlgorithmSettings):
    restart_strategy: str | None = None
    sigma: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.restart_strategy is not None and self.restart_strategy not in RESTART_STRATEGIES:
            raise InvalidSettingsError(
                f"restart_strategy {self.restart_strategy} is not supported in CMAES optimization"
            )
        if self.sigma is not None and not self.sigma >= 0:
            raise InvalidSettingsError("sigma should be great or equal than zero")

    @property
    def initial_sigma(self) -> float:
        return self.sigma if self.sigma else DEFAULT_SIGMA


@dataclass
class _Layout:
    """Which unit-cube coordinates are continuous, categorical (CatCMA) or fixed."""

    continuous: np.ndarray
    categorical: np.ndarray
    cat_num: np.ndarray

    @classmethod
    def of(cls, encoding: SpaceEncoding) -> _Layout:
        cont, cat, nums = [], [], []
        for j, dim in enumerate(encoding.dims):
            if dim.is_categorical:
                if len(dim.choices) > 1:  # a single choice is a constant: not modelled
                    cat.append(j)
                    nums.append(len(dim.choices))
            else:
                cont.append(j)
        return cls(np.array(cont, dtype=int), np.array(cat, dtype=int), np.array(nums, dtype=int))


@dataclass
class _Run:
    """The optimiser state after replaying ``told`` (a prefix of the settled trials)."""

    optimizer: CMA | CatCMA
    told: list[TrialResult] = field(default_factory=list)  # replayed so far, in order
    buffer: list[tuple[np.ndarray, float]] = field(default_factory=list)
    restarts: int = 0
    large_restarts: int = 0
    regime: str = "large"
    evals: dict[str, int] = field(default_factory=lambda: {"small": 0, "large": 0})
    run_evals: int = 0


class CmaEs(Algorithm):
    """CMA-ES (CatCMA with categorical parameters), IPOP/BIPOP restarts."""

    name = "cmaes"
    settings_type: ClassVar[type[AlgorithmSettings]] = CmaEsSettings

    def __init__(self, settings: AlgorithmSettings | None = None) -> None:
        super().__init__(settings)
        self._cache: dict[str, object] = {}
        self._trials: TrialCache | None = None
        self._layout: _Layout | None = None
        self._run: _Run | None = None
        self._seed: int | None = None

    @classmethod
    def validate(
        cls,
        space: SearchSpace,
        objective: Objective,
        settings: AlgorithmSettings,
        max_trial_count: int | None = None,
    ) -> None:
        refuse_conditional("cmaes", space, "use tpe, bayesianoptimization, random, sobol or grid")
        numeric = sum(p.type in (ParameterType.DOUBLE, ParameterType.INT) for p in space)
        if numeric < 2:
            raise UnsupportedSpaceError(
                "cmaes only supports two or more dimensional continuous search space."
            )

    @property
    def _settings(self) -> CmaEsSettings:
        assert isinstance(self.settings, CmaEsSettings)
        return self.settings

    # -- optimiser construction ------------------------------------------------------------------

    def _new_optimizer(
        self, seed: int, mean: np.ndarray, sigma: float, popsize: int | None
    ) -> CMA | CatCMA:
        layout = self._layout
        assert layout is not None
        n_cont = len(layout.continuous)
        bounds = np.tile([0.0, 1.0], (n_cont, 1))
        if len(layout.categorical):
            return CatCMA(
                mean=mean,
                sigma=sigma,
                cat_num=layout.cat_num,
                bounds=bounds,
                seed=seed,
                population_size=popsize,
            )
        return CMA(mean=mean, sigma=sigma, bounds=bounds, seed=seed, population_size=popsize)

    def _fresh_run(self, seed: int) -> _Run:
        layout = self._layout
        assert layout is not None
        mean = np.full(len(layout.continuous), 0.5)
        return _Run(self._new_optimizer(_u32(seed), mean, self._settings.initial_sigma, None))

    def _restart(self, run: _Run, seed: int) -> None:
        """Start a new run after ``run.optimizer`` converged (IPOP/BIPOP/plain restart)."""
        layout = self._layout
        assert layout is not None
        run.evals[run.regime] += run.run_evals
        run.restarts += 1
        run.run_evals = 0
        rng = np.random.default_rng([seed, 0x5EED, run.restarts])
        mean = rng.random(len(layout.continuous))
        base = 4 + math.floor(3 * math.log(len(layout.continuous) + len(layout.categorical)))
        sigma = self._settings.initial_sigma
        strategy = self._settings.restart_strategy
        popsize = run.optimizer.population_size
        if strategy == "ipop":
            popsize = run.optimizer.population_size * _INCREASE_POPSIZE
        elif strategy == "bipop":
            multiplier = _INCREASE_POPSIZE**run.large_restarts
            if run.evals["small"] < run.evals["large"]:  # a small run: cheaper, more local
                run.regime = "small"
                popsize = max(_MIN_POPSIZE, math.floor(base * multiplier ** (rng.random() ** 2)))
                sigma *= 10 ** (-2 * rng.random())
            else:
                run.regime = "large"
                run.large_restarts += 1
                popsize = base * _INCREASE_POPSIZE**run.large_restarts
        run.optimizer = self._new_optimizer(_u32(seed, run.restarts), mean, sigma, popsize)

    # -- replay ----------------------------------------------------------------------------------

    def _solution(self, unit: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        layout = self._layout
        assert layout is not None
        x = unit[layout.continuous]
        if not len(layout.categorical):
            return x
        onehot = np.zeros((len(layout.categorical), int(layout.cat_num.max())), dtype=bool)
        for row, (j, k) in enumerate(zip(layout.categorical, layout.cat_num, strict=True)):
            onehot[row, min(int(unit[j] * k), k - 1)] = True
        return x, onehot

    def _replay(self, history: History, seed: int) -> _Run:
        settled = history.completed[: history.settled]
        run = self._run
        if (
            run is None
            or len(run.told) > len(settled)
            or not all(map(is_, run.told, settled[: len(run.told)]))
        ):
            run = self._fresh_run(seed)
        for i in range(len(run.told), len(settled)):
            run.buffer.append((history.x_completed[i], float(history.losses[i])))
            if len(run.buffer) == run.optimizer.population_size:
                solutions = [(self._solution(u), loss) for u, loss in run.buffer]
                run.optimizer.tell(solutions)  # type: ignore[arg-type]
                run.run_evals += len(run.buffer)
                run.buffer = []
                if run.optimizer.should_stop():
                    self._restart(run, seed)
        run.told = settled
        self._run = run
        return run

    # -- suggest ---------------------------------------------------------------------------------

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        encoding, changed = encoding_for(self._cache, request.space)
        seed = self.seed(request)
        if changed or self._trials is None or seed != self._seed:
            self.validate(request.space, request.objective, self.settings)
            self._trials = TrialCache(encoding)
            self._layout = _Layout.of(encoding)
            self._run = None
            self._seed = seed
        history = self._trials.history(request)
        run = self._replay(history, seed)
        optimizer = run.optimizer
        layout = self._layout
        assert layout is not None
        optimizer.reseed_rng(_u32(seed, len(request.trials)))
        fixed = np.full(len(encoding), 0.5)

        def propose(n: int) -> list[np.ndarray]:
            points = []
            for _ in range(n):
                asked = optimizer.ask()
                u = fixed.copy()
                if isinstance(asked, tuple):
                    x, onehot = asked
                    u[layout.categorical] = (np.argmax(onehot, axis=1) + 0.5) / layout.cat_num
                else:
                    x = asked
                u[layout.continuous] = np.clip(x, 0.0, 1.0)
                points.append(u)
            return points

        rng = request_rng(seed, request)
        return fill_distinct(encoding, request.count, history.keys, rng, propose=propose)


def _u32(*entropy: int) -> int:
    """A 32-bit seed (what ``cmaes``' RandomState takes) from any non-negative ints."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])
