"""Unit-cube encoding of a search space, shared by every algorithm so they all treat spaces
the same way.

Called by the algorithm modules (random, sobol, tpe, cma_es, grid). Each parameter becomes one
coordinate ``u`` in [0, 1] whose uniform distribution *is* the parameter's prior:

- uniform: linear in the value; logUniform: linear in ``log(value)``;
- normal: the CDF of N(mu=(min+max)/2, sigma=(max-min)/6) truncated to [min, max], so a
  uniform ``u`` decodes to that truncated normal; logNormal: the same in log space;
- ints and stepped doubles: the interval is widened by half a step on each side (in value
  space) so that, for uniform parameters, every feasible value owns a cell of equal width;
  decoding snaps with :meth:`tunery.space.Parameter.snap` (``min + k*step``, never outside,
  ``int`` for ints);
- discrete and categorical lists: cell ``i`` of ``n`` equal cells is value ``i`` (discrete
  values in ascending order, so the coordinate is ordinal; categorical in list order).

The module also owns the canonical identity of an assignment (:meth:`SpaceEncoding.key`), the
per-instance trial cache (:class:`TrialCache`) that makes a request with N known and k new
trials cost O(k) encoding work, and :func:`fill_distinct`, the one place where proposals are
de-duplicated against history and where a finite space is declared exhausted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, count
from operator import is_not
from statistics import NormalDist

import numpy as np
from scipy.special import ndtr, ndtri

from suggestion.algorithms.base import SpaceExhaustedError, SuggestRequest
from tunery.space import (
    Assignment,
    Distribution,
    Parameter,
    ParameterType,
    ParamValue,
    SearchSpace,
)
from tunery.trials import ObjectiveType, TrialResult

Key = tuple[object, ...]
"""Canonical identity of an assignment: snapped typed values in parameter order."""

ENUMERATION_LIMIT = 200_000
"""Largest finite space that :func:`fill_distinct` enumerates when random proposals fail."""

_SIGMAS = 3.0  # normal distributions span mean +- 3 sigma between min and max
_SQRT2 = math.sqrt(2.0)
_STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True)
class Dim:
    """One parameter's coordinate in the unit cube (see the module docstring)."""

    param: Parameter
    choices: tuple[ParamValue, ...] = ()  # list parameters, in coordinate order
    log: bool = False
    normal: bool = False
    t_low: float = 0.0  # warped (log or not) interval the coordinate spans
    t_high: float = 1.0
    mu: float = 0.0  # normal distributions, in warped space
    sigma: float = 1.0
    cdf_low: float = 0.0
    cdf_high: float = 1.0
    _index: Mapping[object, int] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, param: Parameter) -> Dim:
        if not param.is_numeric_range:
            choices = param.values
            if param.type is ParameterType.DISCRETE:
                choices = tuple(sorted(choices))  # type: ignore[type-var]
            return cls(param, choices, _index={v: i for i, v in enumerate(choices)})
        assert param.low is not None and param.high is not None
        low, high = float(param.low), float(param.high)
        log = param.distribution.is_log
        normal = param.distribution in (Distribution.NORMAL, Distribution.LOG_NORMAL)
        half = _half_step(param)
        lo_x, hi_x = low - half, high + half
        if log and lo_x <= 0:
            lo_x = low
        warp = math.log if log else float
        t_low, t_high = warp(lo_x), warp(hi_x)
        mu = (warp(low) + warp(high)) / 2
        sigma = (warp(high) - warp(low)) / (2 * _SIGMAS)
        cdf_low = cdf_high = 0.0
        if normal and sigma > 0:
            cdf_low = float(ndtr((t_low - mu) / sigma))
            cdf_high = float(ndtr((t_high - mu) / sigma))
        else:
            normal = False
        return cls(param, (), log, normal, t_low, t_high, mu, sigma, cdf_low, cdf_high)

    # -- properties ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.param.name

    @property
    def is_list(self) -> bool:
        """Discrete or categorical: the coordinate selects one of ``choices``."""
        return not self.param.is_numeric_range

    @property
    def is_categorical(self) -> bool:
        return self.param.type is ParameterType.CATEGORICAL

    @property
    def n_cells(self) -> int | None:
        """Number of feasible values, or None for a continuous double."""
        return self.param.grid_size()

    @property
    def is_stepped(self) -> bool:
        """A numeric range with a finite set of values (int, or double with a step)."""
        return self.param.is_numeric_range and self.n_cells is not None

    # -- value <-> unit --------------------------------------------------------------------------

    def encode(self, value: object) -> float:
        """Unit coordinate of a typed value; NaN when the value is not of this parameter."""
        if self.is_list:
            i = self._index.get(value)  # type: ignore[arg-type]
            if i is None:
                return math.nan
            return (i + 0.5) / len(self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return math.nan
        if not math.isfinite(value):
            return math.nan
        if self.t_high == self.t_low:
            return 0.5
        assert self.param.low is not None and self.param.high is not None
        x = min(max(float(value), float(self.param.low)), float(self.param.high))
        t = math.log(x) if self.log else x
        if self.normal:
            cdf = 0.5 * math.erfc((self.mu - t) / (self.sigma * _SQRT2))
            u = (cdf - self.cdf_low) / (self.cdf_high - self.cdf_low)
        else:
            u = (t - self.t_low) / (self.t_high - self.t_low)
        return min(max(u, 0.0), 1.0)

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Vectorised value -> unit coordinate for numeric ranges (clipped to [0, 1])."""
        assert self.param.low is not None and self.param.high is not None
        if self.t_high == self.t_low:
            return np.full_like(x, 0.5, dtype=float)
        lo = max(float(self.param.low), math.exp(self.t_low) if self.log else self.t_low)
        x = np.clip(x, lo, float(self.param.high))
        t = np.log(x) if self.log else x
        if self.normal:
            u = (ndtr((t - self.mu) / self.sigma) - self.cdf_low) / (self.cdf_high - self.cdf_low)
        else:
            u = (t - self.t_low) / (self.t_high - self.t_low)
        return np.clip(u, 0.0, 1.0)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Vectorised unit coordinate -> continuous value (before snapping)."""
        u = np.clip(u, 0.0, 1.0)
        if self.normal:
            p = self.cdf_low + u * (self.cdf_high - self.cdf_low)
            p = np.clip(p, 1e-300, 1 - 1e-16)
            t = np.clip(self.mu + self.sigma * ndtri(p), self.t_low, self.t_high)
        else:
            t = self.t_low + u * (self.t_high - self.t_low)
        return np.exp(t) if self.log else t

    def decode(self, u: float) -> ParamValue:
        """Typed feasible value of a unit coordinate."""
        if self.is_list:
            n = len(self.choices)
            return self.choices[min(max(int(u * n), 0), n - 1)]
        u = min(max(u, 0.0), 1.0)
        if self.normal:
            p = self.cdf_low + u * (self.cdf_high - self.cdf_low)
            p = min(max(p, 1e-300), 1.0 - 1e-16)
            t = min(
                max(self.mu + self.sigma * _STANDARD_NORMAL.inv_cdf(p), self.t_low), self.t_high
            )
        else:
            t = self.t_low + u * (self.t_high - self.t_low)
        return self.param.snap(math.exp(t) if self.log else t)

    def index_of(self, u: np.ndarray) -> np.ndarray:
        """Cell index of unit coordinates for list parameters."""
        n = len(self.choices)
        return np.clip((np.asarray(u) * n).astype(np.int64), 0, n - 1)

    def cell_bounds(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit-space bounds of the cell each coordinate snaps to (stepped numeric ranges)."""
        p = self.param
        assert p.low is not None and p.high is not None
        step = float(p.step or 1)
        x = self.from_unit(u)
        k_max = (self.n_cells or 1) - 1
        k = np.clip(np.round((x - p.low) / step), 0, k_max)
        centre = p.low + k * step
        return self._unit_of_edge(centre - step / 2), self._unit_of_edge(centre + step / 2)

    def _unit_of_edge(self, x: np.ndarray) -> np.ndarray:
        if self.t_high == self.t_low:
            return np.where(x < float(self.param.low or 0), 0.0, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.log(np.maximum(x, 1e-300)) if self.log else x
        t = np.clip(t, self.t_low, self.t_high)
        if self.normal:
            u = (ndtr((t - self.mu) / self.sigma) - self.cdf_low) / (self.cdf_high - self.cdf_low)
        else:
            u = (t - self.t_low) / (self.t_high - self.t_low)
        return np.clip(u, 0.0, 1.0)

    def canonical(self, value: object) -> object:
        """The value as it identifies an assignment (numbers snapped to the grid/range)."""
        if self.is_list or isinstance(value, bool) or not isinstance(value, int | float):
            return value
        if not math.isfinite(value):
            return value
        return self.param.snap(value)


def _half_step(param: Parameter) -> float:
    if param.type is ParameterType.INT:
        return float(param.step or 1) / 2
    if param.step is not None:
        return float(param.step) / 2
    return 0.0


class SpaceEncoding:
    """The unit-cube view of a :class:`SearchSpace` (see the module docstring)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.dims = tuple(Dim.of(p) for p in space)
        self.size = space.grid_size()

    def __len__(self) -> int:
        return len(self.dims)

    @property
    def is_finite(self) -> bool:
        return self.size is not None

    def encode(self, assignment: Mapping[str, object]) -> np.ndarray:
        """Unit coordinates of an assignment; NaN where a value is missing or foreign."""
        return np.array(
            [d.encode(assignment.get(d.name, math.nan)) for d in self.dims], dtype=float
        )

    def decode(self, u: Sequence[float] | np.ndarray) -> Assignment:
        """Typed feasible assignment of a point of the unit cube (plain Python types)."""
        return {d.name: d.decode(float(x)) for d, x in zip(self.dims, u, strict=True)}

    def key(self, assignment: Mapping[str, object]) -> Key:
        return tuple(d.canonical(assignment.get(d.name)) for d in self.dims)


# -- trial history ------------------------------------------------------------------------------


class History:
    """The part of a request the models use, in request order.

    ``losses`` are objective values turned into minimisation (negated when maximising);
    completed trials with a non-finite value or an undecodable assignment are left out of
    ``x_completed`` (but still count as existing points in ``keys``). ``settled`` is how many
    of the completed rows come before the first pending trial: the prefix of the history that
    can no longer change (CMA-ES tells only that prefix).
    """

    def __init__(
        self,
        keys: Collection[Key],
        x_completed: np.ndarray,
        losses: np.ndarray,
        completed: Sequence[TrialResult],
        x_pending: np.ndarray,
        n_trials: int,
        settled: int,
    ) -> None:
        self.keys = keys
        self.x_completed = x_completed  # (n, d) unit coordinates
        self.losses = losses  # (n,)
        self.completed = completed  # the n completed trials, in order
        self.x_pending = x_pending  # (m, d)
        self.n_trials = n_trials
        self.settled = settled


@dataclass
class _Row:
    assignment: Mapping[str, object]
    key: Key
    unit: np.ndarray
    valid: bool


class TrialCache:
    """Per-algorithm-instance cache of each trial's key and unit coordinates.

    Requests carry the whole history, mostly unchanged: the leading trials that are the very
    same objects as in the previous request (the service reuses them) keep their rows, found
    at C speed; only the rest is processed (O(k) for k new or changed trials). A trial whose
    state changed keeps its row when its assignment is the same object or equal. The result
    never depends on what was cached: a fresh cache gives the same history.
    """

    def __init__(self, encoding: SpaceEncoding) -> None:
        self.encoding = encoding
        self._trials: list[TrialResult] = []
        self._rows: list[_Row] = []
        self._by_name: dict[str, _Row] = {}
        self._key_counts: dict[Key, int] = {}
        d = len(encoding)
        self._unit = np.empty((0, d))
        self._loss = np.empty(0)  # NaN unless completed with a finite value
        self._pending = np.empty(0, dtype=bool)
        self._valid = np.empty(0, dtype=bool)
        self._sign = 1.0

    def _row(self, trial: TrialResult) -> _Row:
        row = self._by_name.get(trial.name) if trial.name else None
        if row is None or not (
            row.assignment is trial.assignment or row.assignment == trial.assignment
        ):
            unit = self.encoding.encode(trial.assignment)
            row = _Row(
                trial.assignment,
                self.encoding.key(trial.assignment),
                unit,
                bool(np.all(np.isfinite(unit))),
            )
            if trial.name:
                self._by_name[trial.name] = row
        return row

    def _sync(self, request: SuggestRequest) -> int:
        """Bring the rows up to date with ``request.trials``; returns the trial count."""
        trials = request.trials
        sign = -1.0 if request.objective.type is ObjectiveType.MAXIMIZE else 1.0
        prev = self._trials
        n = len(trials)
        same = min(n, len(prev))
        if sign != self._sign:
            self._sign = sign
            first_change = 0
        else:
            first_change = next(compress(count(), map(is_not, trials, prev)), same)
        for row in self._rows[first_change:]:
            left = self._key_counts[row.key] - 1
            if left:
                self._key_counts[row.key] = left
            else:
                del self._key_counts[row.key]
        del self._rows[first_change:]
        if n > len(self._unit):
            capacity = max(n, 2 * len(self._unit), 64)
            self._unit = _grow(self._unit, capacity)
            self._loss = _grow(self._loss, capacity)
            self._pending = _grow(self._pending, capacity)
            self._valid = _grow(self._valid, capacity)
        for i in range(first_change, n):
            trial = trials[i]
            row = self._row(trial)
            self._rows.append(row)
            self._key_counts[row.key] = self._key_counts.get(row.key, 0) + 1
            self._unit[i] = row.unit
            self._valid[i] = row.valid
            self._pending[i] = trial.is_pending
            value = trial.value if trial.is_completed_with_value else None
            if value is not None and math.isfinite(value) and row.valid:
                self._loss[i] = sign * float(value)
            else:
                self._loss[i] = math.nan
        self._trials = list(trials)
        if len(self._by_name) > 2 * n + 64:  # forget trials no longer sent
            self._by_name = {t.name: r for t, r in zip(trials, self._rows, strict=True) if t.name}
        return n

    def keys(self, request: SuggestRequest) -> Collection[Key]:
        """Canonical keys of every trial of the request (any state). Read-only."""
        self._sync(request)
        return self._key_counts.keys()

    def history(self, request: SuggestRequest) -> History:
        n = self._sync(request)
        loss = self._loss[:n]
        completed = ~np.isnan(loss)
        pending = self._pending[:n] & self._valid[:n]
        first_pending = int(np.argmax(self._pending[:n])) if self._pending[:n].any() else n
        index = np.flatnonzero(completed)
        trials = self._trials
        return History(
            keys=self._key_counts.keys(),
            x_completed=self._unit[:n][completed],
            losses=loss[completed],
            completed=_Lazy(trials, index),
            x_pending=self._unit[:n][pending],
            n_trials=n,
            settled=int(completed[:first_pending].sum()),
        )


class _Lazy(Sequence[TrialResult]):
    """The completed trials, materialised only when asked for."""

    def __init__(self, trials: list[TrialResult], index: np.ndarray) -> None:
        self._trials = trials
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [self._trials[j] for j in self._index[i]]
        return self._trials[self._index[i]]


def _grow(a: np.ndarray, capacity: int) -> np.ndarray:
    out = np.empty((capacity, *a.shape[1:]), dtype=a.dtype)
    out[: len(a)] = a
    return out


def encoding_for(cache: dict[str, object], space: SearchSpace) -> tuple[SpaceEncoding, bool]:
    """The instance's encoding for ``space``, rebuilt (returns True) when the space changed."""
    enc = cache.get("encoding")
    if isinstance(enc, SpaceEncoding) and (enc.space is space or enc.space == space):
        return enc, False
    enc = SpaceEncoding(space)
    cache["encoding"] = enc
    return enc, True


# -- distinct proposals -------------------------------------------------------------------------


def request_rng(seed: int, request: SuggestRequest, *salt: int) -> np.random.Generator:
    """The RNG of one request: a pure function of the seed and the history size."""
    return np.random.default_rng([seed, len(request.trials), request.count, *salt])


def fill_distinct(
    encoding: SpaceEncoding,
    count: int,
    seen: Collection[Key],
    rng: np.random.Generator,
    chosen: list[Assignment] | None = None,
    propose: Callable[[int], Iterable[Sequence[float] | np.ndarray]] | None = None,
    rounds: int = 16,
) -> list[Assignment]:
    """Complete ``chosen`` to ``count`` assignments distinct from ``seen`` and each other.

    Proposals come first from ``propose(n)`` (unit-cube points, the algorithm's own sampler),
    then from uniform sampling of the unit cube (the prior), and finally, for a finite space,
    from enumerating the feasible points not yet used.

    Raises:
        SpaceExhaustedError: a finite space has fewer unused points than requested.
    """
    out = list(chosen or [])
    taken = {encoding.key(a) for a in out}
    d = len(encoding)

    def offer(points: Iterable[Sequence[float] | np.ndarray]) -> None:
        for u in points:
            if len(out) >= count:
                return
            a = encoding.decode(u)
            k = encoding.key(a)
            if k in seen or k in taken:
                continue
            taken.add(k)
            out.append(a)

    if encoding.size is not None and encoding.size - len(seen) < count:
        rounds = 0  # almost certainly exhausted: go straight to enumeration
    sources: list[Callable[[int], Iterable[Sequence[float] | np.ndarray]]] = []
    if propose is not None:
        sources.append(propose)
    sources.append(lambda n: rng.random((n, d)))
    for source in sources:
        for _ in range(rounds):
            if len(out) >= count:
                return out
            offer(source(max(2 * (count - len(out)), 8)))
    if len(out) >= count:
        return out
    if encoding.size is None:  # continuous: collisions this persistent mean a bug
        raise SpaceExhaustedError(
            f"could not find {count} distinct assignments after {2 * rounds} rounds"
        )
    return _enumerate_rest(encoding, count, seen, rng, out, taken)


def _enumerate_rest(
    encoding: SpaceEncoding,
    count: int,
    seen: Collection[Key],
    rng: np.random.Generator,
    out: list[Assignment],
    taken: set[Key],
) -> list[Assignment]:
    assert encoding.size is not None
    space = encoding.space
    free: list[Assignment] = []
    need = count - len(out)
    for a in space.grid():
        k = encoding.key(a)
        if k in seen or k in taken:
            continue
        free.append(a)
        if encoding.size > ENUMERATION_LIMIT and len(free) >= need:
            break
    if len(free) < need:
        used = encoding.size - len(free) - len(out)
        raise SpaceExhaustedError(
            f"the search space is exhausted: it has {encoding.size} distinct assignments, "
            f"{used} are already used by trials and {len(out) + len(free)} remain, but "
            f"{count} were requested"
        )
    picks = rng.choice(len(free), size=need, replace=False)
    out.extend(free[int(i)] for i in sorted(picks))
    return out
