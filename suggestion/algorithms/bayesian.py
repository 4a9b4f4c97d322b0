"""Bayesian optimisation: Katib's ``bayesianoptimization`` algorithm.

Registered in ``suggestion.algorithms.REGISTRY``; called by ``suggestion.service`` (one
instance per experiment) and the conformance suite. Katib serves this name with
scikit-optimize; tunery accepts the same settings (katib-reference.md §3) with the same
messages, but models natively:

- ``base_estimator=GP`` (default): a Matérn-5/2 ARD Gaussian process in numpy/scipy
  (``_gp``), hyperparameters by MAP-II with L-BFGS-B, acquisition maximised over a Sobol +
  incumbent-perturbation pool refined by L-BFGS-B and value-by-value search of small discrete
  columns (``_gp_acq``), on the unit-cube encoding of ``_gp_space``. No torch.
- ``RF``/``ET``/``GBRT``: scikit-learn tree ensembles (``_ensemble``), scored by the same
  acquisition on the ensemble's mean and spread over a sampled pool. Needs scikit-learn.

Modelling choices that matter for quality (measured in bench/gp_quality.py): outputs are
standardised and the GP's constant prior mean is the *worst* standardised score seen, so
unexplored regions look no better than the worst trial until data says otherwise; this stops
expected improvement from spending trials in the corners of the cube (BO's boundary
over-exploration) and beat a zero prior mean on every benchmark tried. The noise variance has
a floor of 1e-8 (standardised), low enough to refine a deterministic objective near its
optimum; a noisy objective fits its own noise level.

Setting mapping: ``acq_func`` gp_hedge, EI and EIps -> log expected improvement (the hedge
portfolio and the per-second variants need state and trial durations Katib never sends);
PI and PIps -> log probability of improvement; LCB -> mean + 1.96 std (skopt's kappa).
``acq_optimizer`` sampling -> score the pool only; lbfgs and auto -> also refine the best
candidates locally (GP only; tree ensembles always sample, and lbfgs with them is rejected).
``n_initial_points`` counts completed plus in-flight trials: until that many exist, points
come from a scrambled Sobol sequence (position = number of trials in the request, so a
restart continues the sequence). The model also needs two completed trials before it takes
over, whatever ``n_initial_points`` says.

Determinism and caching: every random choice is seeded by the experiment's seed
(``random_state``, or derived from the experiment name) and the request. The only model
state an instance keeps is a memo of fitted hyperparameters keyed by the exact data they
were fitted on, so a fresh instance given the same request returns the same assignments as a
warm one; besides it, each trial's encoded row is kept by name (a request with N known
trials and k new ones encodes k). Hyperparameters are refitted at every completed trial up
to 30, then on a schedule (about every 7% growth of the history) on the history's prefix up
to that point; between refits a request only refactorises the kernel. Beyond 400 completed
trials the GP sees the best 200 and the 200 most recent, so latency stays bounded.

Constraints (``Objective.constraints``, a tunery extension): one GP per constraint on the
trials that reported it, and the acquisition is multiplied by the probability that every
constraint is met (``_gp_acq``); the incumbent is the best feasible trial, and while none is
feasible the search maximises the probability of feasibility alone. Tree ensembles have no
feasibility model: infeasible trials rank below every feasible one.

Objective values: minimised objectives are negated into a maximised score; NaN and infinite
values count as the worst finite value seen (so the search avoids where they happened);
failed, killed and metrics-unavailable trials only block their points from being proposed
again. Pending (created/running) trials and the earlier points of the same batch enter the
GP as fantasies one standard deviation below the posterior mean (a pessimistic Kriging
believer), which keeps a batch spread out;
every assignment is distinct from each other and from every trial in the request (canonical
keys of ``_encoding``), and a used-up finite space raises ``SpaceExhaustedError``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from suggestion.algorithms._distinct import fill_distinct, request_rng
from suggestion.algorithms._encoding import Key, encoding_for
from suggestion.algorithms._gp import GaussianProcess, KernelParams, fit_kernel_params
from suggestion.algorithms._gp_acq import (
    Acquisition,
    AcquisitionKind,
    ConstraintModel,
    rank_candidates,
    sobol_engine,
)
from suggestion.algorithms._gp_space import UnitCube
from suggestion.algorithms._history import TrialCache
from suggestion.algorithms._threads import single_threaded_math
from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    InvalidSettingsError,
    SuggestRequest,
)
from tunery.space import Assignment, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialResult

BASE_ESTIMATORS = ("GP", "RF", "ET", "GBRT")
ACQ_FUNCS = ("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps")
ACQ_OPTIMIZERS = ("auto", "sampling", "lbfgs")

_ACQ_KIND = {
    "gp_hedge": AcquisitionKind.LOG_EI,
    "EI": AcquisitionKind.LOG_EI,
    "EIps": AcquisitionKind.LOG_EI,
    "PI": AcquisitionKind.LOG_PI,
    "PIps": AcquisitionKind.LOG_PI,
    "LCB": AcquisitionKind.UCB,
}

_ALWAYS_REFIT_UP_TO = 30
_MAX_GP_POINTS = 400
_FIT_MEMO_SIZE = 8
_MIN_OBSERVATIONS = 2
_N_INCUMBENTS = 5
_SOBOL_ATTEMPTS = 64
_LIE_STDS = 1.0


@dataclass(frozen=True)
class BayesianOptimizationSettings(AlgorithmSettings):
    """Katib's skopt settings, with Katib's defaults and messages."""

    base_estimator: str = "GP"
    n_initial_points: int = 10
    acq_func: str = "gp_hedge"
    acq_optimizer: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.base_estimator not in BASE_ESTIMATORS:
            raise InvalidSettingsError(
                f"base_estimator {self.base_estimator} is not supported in Bayesian "
                f"optimization (choose one of {', '.join(BASE_ESTIMATORS)})"
            )
        if self.n_initial_points < 0:
            raise InvalidSettingsError("n_initial_points should be great or equal than zero")
        if self.acq_func not in ACQ_FUNCS:
            raise InvalidSettingsError(
                f"acq_func {self.acq_func} is not supported in Bayesian optimization "
                f"(choose one of {', '.join(ACQ_FUNCS)})"
            )
        if self.acq_optimizer not in ACQ_OPTIMIZERS:
            raise InvalidSettingsError(
                f"acq_optimizer {self.acq_optimizer} is not supported in Bayesian "
                f"optimization (choose one of {', '.join(ACQ_OPTIMIZERS)})"
            )
        if self.acq_optimizer == "lbfgs" and self.base_estimator != "GP":
            raise InvalidSettingsError(
                f"acq_optimizer lbfgs needs base_estimator GP; base_estimator "
                f"{self.base_estimator} has no gradient, use acq_optimizer auto or sampling"
            )


# -- data preparation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _History:
    """What the models see: encoded completed points with a maximised score (possibly
    non-finite), and encoded pending points."""

    x: np.ndarray
    score: np.ndarray
    pending: np.ndarray
    constraints: np.ndarray  # (n, m) constraint values, NaN where not reported

    @property
    def feasible(self) -> np.ndarray:
        """(n,) whether each completed trial met every constraint (all True without any)."""
        c = self.constraints
        return np.all(np.isfinite(c) & (c <= 0), axis=1)


class _EncodedRows:
    """Each trial's encoded row, kept between requests: a request with N known trials and k
    new ones encodes k (the service hands back the same assignment objects for unchanged
    trials; an equal assignment under the same name also hits). Not thread-safe: the
    service serialises an experiment's requests."""

    def __init__(self, cube: UnitCube) -> None:
        self.cube = cube
        self._rows: dict[str, tuple[Assignment, np.ndarray | None]] = {}

    def row(self, trial: TrialResult) -> np.ndarray | None:
        if not trial.name:
            return self.cube.encode(trial.assignment)
        hit = self._rows.get(trial.name)
        if hit is not None and (hit[0] is trial.assignment or hit[0] == trial.assignment):
            return hit[1]
        row = self.cube.encode(trial.assignment)
        if row is not None:
            row.flags.writeable = False  # shared between requests
        self._rows[trial.name] = (trial.assignment, row)
        return row

    def forget_unless(self, trials: Sequence[TrialResult]) -> None:
        """Drop the rows of trials no longer sent (called when the memo has grown)."""
        if len(self._rows) > 2 * len(trials) + 64:
            names = {t.name for t in trials}
            self._rows = {k: v for k, v in self._rows.items() if k in names}


def _history(request: SuggestRequest, rows_of: _EncodedRows) -> _History:
    sign = -1.0 if request.objective.type is ObjectiveType.MINIMIZE else 1.0
    encode = rows_of.row
    rows: list[np.ndarray] = []
    scores: list[float] = []
    constraints: list[tuple[float, ...]] = []
    m = len(request.objective.constraints)
    pending: list[np.ndarray] = []
    for trial in request.trials:
        if trial.is_completed_with_value:
            row = encode(trial)
            if row is not None:
                rows.append(row)
                assert trial.value is not None
                scores.append(sign * float(trial.value))
                values = trial.constraint_values
                constraints.append(values if len(values) == m else (np.nan,) * m)
        elif trial.is_pending:
            row = encode(trial)
            if row is not None:
                pending.append(row)
    rows_of.forget_unless(request.trials)
    dim = rows_of.cube.dim
    return _History(
        np.array(rows).reshape(-1, dim),
        np.array(scores, dtype=float),
        np.array(pending).reshape(-1, dim),
        np.array(constraints, dtype=float).reshape(len(scores), m),
    )


def constraint_models(
    x: np.ndarray, values: np.ndarray, is_cat: np.ndarray
) -> list[ConstraintModel]:
    """One GP per constraint, fitted on the trials that reported it (standardised; feasible
    below the standardised 0). A constraint reported by fewer than two trials, or constant,
    gets no model (it cannot tell regions apart yet)."""
    models = []
    for j in range(values.shape[1]):
        c = values[:, j]
        seen = np.isfinite(c)
        if seen.sum() < _MIN_OBSERVATIONS:
            continue
        mean, sd = float(np.mean(c[seen])), float(np.std(c[seen]))
        if sd < 1e-12 * max(1.0, abs(mean)):
            continue
        xs, ys = np.ascontiguousarray(x[seen]), (c[seen] - mean) / sd
        params = fit_kernel_params(xs, ys, is_cat)
        gp = GaussianProcess(xs, ys, is_cat, params, prior_mean=0.0)
        models.append(ConstraintModel(gp, (0.0 - mean) / sd))
    return models


def standardize(score: np.ndarray) -> np.ndarray:
    """Zero-mean unit-variance scores; non-finite ones first replaced by the worst finite
    score (all zeros when nothing is finite or everything is equal)."""
    finite = np.isfinite(score)
    if not finite.any():
        return np.zeros_like(score)
    filled = np.where(finite, score, np.min(score[finite]))
    sd = float(np.std(filled))
    if sd < 1e-12 * max(1.0, float(np.max(np.abs(filled)))):
        return np.zeros_like(filled)
    return (filled - float(np.mean(filled))) / sd


def model_subset(score: np.ndarray, cap: int = _MAX_GP_POINTS) -> np.ndarray:
    """Indices (ascending) of the completed trials the GP is fitted on: all of them up to
    ``cap``; beyond, the best half of the cap by score plus the most recent others, so the
    cost stays bounded however long the experiment runs."""
    n = len(score)
    if n <= cap:
        return np.arange(n)
    filled = np.where(np.isfinite(score), score, -np.inf)
    best = np.argsort(-filled, kind="stable")[: cap // 2]
    rest = np.setdiff1d(np.arange(n), best)[-(cap - len(best)) :]
    return np.sort(np.concatenate([best, rest]))


def refit_point(n: int) -> int:
    """Size of the history prefix whose fitted hyperparameters serve a history of ``n``."""
    m = n
    while m > _ALWAYS_REFIT_UP_TO and m % max(1, m // 15) != 0:
        m -= 1
    return m


# -- proposers ----------------------------------------------------------------------------------


class Proposer(Protocol):
    """A fitted model that proposes points one at a time and absorbs each as a fantasy."""

    def ranked(self, rng: np.random.Generator) -> np.ndarray: ...

    def add(self, row: np.ndarray) -> None: ...


class _GPProposer:
    def __init__(
        self,
        gp: GaussianProcess,
        cube: UnitCube,
        settings: BayesianOptimizationSettings,
        best: float,
        incumbents: np.ndarray,
        constraints: Sequence[ConstraintModel] = (),
        feasible_seen: bool = True,
    ) -> None:
        self.gp = gp
        self.cube = cube
        self.kind = _ACQ_KIND[settings.acq_func]
        self.local = settings.acq_optimizer != "sampling"
        self.best = best
        self.incumbents = incumbents
        self.constraints = constraints
        self.feasible_seen = feasible_seen

    def ranked(self, rng: np.random.Generator) -> np.ndarray:
        acq = Acquisition(
            self.gp,
            self.kind,
            self.best,
            constraints=self.constraints,
            feasible_seen=self.feasible_seen,
        )
        points, _ = rank_candidates(acq, self.cube, rng, self.incumbents, local=self.local)
        return points

    def add(self, row: np.ndarray) -> None:
        """Fantasise an observation at ``row``: the posterior mean minus one standard
        deviation, a mildly pessimistic lie that lowers the acquisition in the point's
        neighbourhood (the plain posterior mean, Kriging believer, only shrinks the variance
        and let batches of 4-8 collapse onto one optimum: 10x-1000x worse regret measured)."""
        mean, var = self.gp.posterior(row[None, :])
        self.gp = self.gp.condition(row[None, :], mean - _LIE_STDS * np.sqrt(var))


class BayesianOptimization(Algorithm):
    """GP-based Bayesian optimisation (tree ensembles on request); see the module docstring."""

    name = "bayesianoptimization"
    settings_type = BayesianOptimizationSettings

    settings: BayesianOptimizationSettings

    def __init__(self, settings: AlgorithmSettings | None = None) -> None:
        super().__init__(settings)
        self._lock = threading.Lock()
        self._fits: OrderedDict[bytes, KernelParams] = OrderedDict()
        self._cube: UnitCube | None = None
        self._cache: dict[str, object] = {}
        self._trials: TrialCache | None = None
        self._rows: _EncodedRows | None = None

    @classmethod
    def validate(
        cls,
        space: SearchSpace,
        objective: Objective,
        settings: AlgorithmSettings,
        max_trial_count: int | None = None,
    ) -> None:
        assert isinstance(settings, BayesianOptimizationSettings)
        if settings.base_estimator != "GP" and importlib.util.find_spec("sklearn") is None:
            raise InvalidSettingsError(
                f"base_estimator {settings.base_estimator} needs scikit-learn, which is not "
                "installed on this suggestion server: pip install scikit-learn, or use "
                "base_estimator GP"
            )

    # -- the request --------------------------------------------------------------------------

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        if request.count <= 0:
            return []
        with single_threaded_math():
            return self._suggest(request)

    def _suggest(self, request: SuggestRequest) -> list[Assignment]:
        encoding, changed = encoding_for(self._cache, request.space)
        if changed or self._trials is None:
            self._trials = TrialCache(encoding)
        keys = self._trials.keys(request)  # canonical keys of every trial, any state
        seed = self.seed(request)
        rng = request_rng(seed, request)
        if encoding.size is not None and encoding.size - len(keys) < request.count:
            # (Nearly) used up: the shared helper takes what is left or says it is exhausted.
            return fill_distinct(encoding, request.count, keys, rng)
        cube = self._cube_for(request.space)
        if self._rows is None or self._rows.cube is not cube:
            self._rows = _EncodedRows(cube)
        history = _history(request, self._rows)
        initial = _InitialDesign(cube, seed, cursor=len(request.trials))
        in_flight = len(history.x) + len(history.pending)
        model_ready = len(history.x) >= _MIN_OBSERVATIONS
        batch_keys: set[Key] = set()

        def is_free(assignment: Assignment) -> bool:
            key = encoding.key(assignment)
            return key not in keys and key not in batch_keys

        proposer: Proposer | None = None
        batch_rows: list[np.ndarray] = []
        out: list[Assignment] = []
        for i in range(request.count):
            assignment: Assignment | None = None
            if model_ready and in_flight + i >= self.settings.n_initial_points:
                if proposer is None:
                    proposer = self._proposer(cube, history, batch_rows, rng)
                assignment = next(
                    (a for a in map(cube.decode, proposer.ranked(rng)) if is_free(a)), None
                )
            else:
                assignment = initial.next(is_free)
            if assignment is None:  # every candidate taken: random, then enumeration
                assignment = fill_distinct(encoding, len(out) + 1, keys, rng, chosen=out)[-1]
            row = cube.encode(assignment)
            assert row is not None
            batch_keys.add(encoding.key(assignment))
            batch_rows.append(row)
            if proposer is not None and i + 1 < request.count:
                proposer.add(row)
            out.append(assignment)
        return out

    # -- models -------------------------------------------------------------------------------

    def _cube_for(self, space: SearchSpace) -> UnitCube:
        with self._lock:
            cube = self._cube
        if cube is None or cube.space != space:
            cube = UnitCube(space)
            with self._lock:
                self._cube = cube
        return cube

    def _proposer(
        self,
        cube: UnitCube,
        history: _History,
        batch_rows: Sequence[np.ndarray],
        rng: np.random.Generator,
    ) -> Proposer:
        y = standardize(history.score)
        if history.constraints.shape[1]:  # rank feasible trials first for the incumbents
            y = np.where(history.feasible, y, np.min(y) - 1.0)
        ranked_x = history.x[np.argsort(-y, kind="stable")]
        _, first = np.unique(ranked_x, axis=0, return_index=True)
        top = ranked_x[np.sort(first)[:_N_INCUMBENTS]]  # best distinct observed points
        fantasies = np.vstack([history.pending, *[r[None, :] for r in batch_rows]]).reshape(
            -1, cube.dim
        )
        if self.settings.base_estimator != "GP":
            from suggestion.algorithms._ensemble import EnsembleProposer

            return EnsembleProposer(
                cube,
                history.x,
                y,  # infeasible trials ranked below every feasible one (no feasibility model)
                fantasies,
                self.settings.base_estimator,
                _ACQ_KIND[self.settings.acq_func],
                _seed_of(rng),
                top,
            )
        keep = model_subset(history.score)
        params = self._fitted_params(history.x, history.score, cube.is_cat)
        x, y = history.x[keep], standardize(history.score[keep])
        gp = GaussianProcess(x, y, cube.is_cat, params, prior_mean=float(np.min(y)))
        feasible = history.feasible[keep]
        models = constraint_models(history.x[keep], history.constraints[keep], cube.is_cat)
        best = float(np.max(y[feasible])) if feasible.any() else float(np.min(y))
        proposer = _GPProposer(
            gp, cube, self.settings, best, top, models, feasible_seen=bool(feasible.any())
        )
        for row in fantasies:
            proposer.add(row)
        return proposer

    def _fitted_params(self, x: np.ndarray, score: np.ndarray, is_cat: np.ndarray) -> KernelParams:
        m = refit_point(len(x))
        keep = model_subset(score[:m])
        xs, ys = np.ascontiguousarray(x[:m][keep]), standardize(score[:m][keep])
        ys = ys - np.min(ys)  # the pessimistic prior mean, as in _proposer
        digest = hashlib.blake2b(digest_size=20)
        for part in (np.array(xs.shape, dtype=np.int64), xs, ys, is_cat.astype(np.uint8)):
            digest.update(part.tobytes())
        key = digest.digest()
        with self._lock:
            params = self._fits.get(key)
            if params is not None:
                self._fits.move_to_end(key)
                return params
        params = fit_kernel_params(xs, ys, is_cat)
        with self._lock:
            self._fits[key] = params
            while len(self._fits) > _FIT_MEMO_SIZE:
                self._fits.popitem(last=False)
        return params


def _seed_of(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


class _InitialDesign:
    """Scrambled Sobol points from a cursor, skipping points already taken."""

    def __init__(self, cube: UnitCube, seed: int, cursor: int) -> None:
        self.cube = cube
        self.engine = sobol_engine(cube.dim, seed)
        if cursor:
            self.engine.fast_forward(cursor)

    def next(self, is_free: Callable[[Assignment], bool]) -> Assignment | None:
        for _ in range(_SOBOL_ATTEMPTS):
            assignment = self.cube.decode(self.cube.from_unit(self.engine.random(1))[0])
            if is_free(assignment):
                return assignment
        return None


__all__ = [
    "ACQ_FUNCS",
    "ACQ_OPTIMIZERS",
    "BASE_ESTIMATORS",
    "BayesianOptimization",
    "BayesianOptimizationSettings",
    "refit_point",
    "standardize",
]
