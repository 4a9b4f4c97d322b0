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

Conditional spaces: every parameter keeps its coordinate. :meth:`SpaceEncoding.decode` drops
the parameters that the decoded point makes inactive, :meth:`SpaceEncoding.encode` gives NaN
for an inactive (absent) parameter, and the key holds None there; each model decides what an
inactive coordinate means (tpe fits each coordinate on the trials where it was active, the GP
imputes a constant, random/sobol/grid need nothing more).

The module also owns the canonical identity of an assignment (:meth:`SpaceEncoding.key`):
snapped typed values, so the same point written differently (``0.30000000000000004`` for a
0.1-step grid value ``0.3``) is recognised as the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from tunery.space import (
    Assignment,
    Distribution,
    Parameter,
    ParameterType,
    ParamValue,
    SearchSpace,
)


def ndtr(x: Any) -> Any:
    """Standard normal CDF. scipy is imported only for normal/logNormal parameters, which keeps
    the start of random, grid, sobol and cmaes (and of ``tunery run``) light."""
    from scipy.special import ndtr as _ndtr

    return _ndtr(x)


def ndtri(p: Any) -> Any:
    """Inverse standard normal CDF (see :func:`ndtr`)."""
    from scipy.special import ndtri as _ndtri

    return _ndtri(p)


Key = tuple[object, ...]
"""Canonical identity of an assignment: snapped typed values in parameter order."""

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
        self.conditional = space.is_conditional

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
        """Typed feasible assignment of a point of the unit cube (plain Python types), without
        the parameters it makes inactive."""
        full = {d.name: d.decode(float(x)) for d, x in zip(self.dims, u, strict=True)}
        return self.space.prune(full) if self.conditional else full

    def is_valid(self, assignment: Mapping[str, object], unit: np.ndarray) -> bool:
        """Whether ``assignment`` (encoded as ``unit``) is a point of the space: every active
        coordinate finite, and no inactive parameter given."""
        if not self.conditional:
            return bool(np.all(np.isfinite(unit)))
        active = self.space.active(assignment)
        if set(assignment) != active:
            return False
        return all(
            math.isfinite(float(x))
            for d, x in zip(self.dims, unit, strict=True)
            if d.name in active
        )

    def key(self, assignment: Mapping[str, object]) -> Key:
        return tuple(d.canonical(assignment.get(d.name)) for d in self.dims)


def encoding_for(cache: dict[str, object], space: SearchSpace) -> tuple[SpaceEncoding, bool]:
    """The instance's encoding for ``space``, rebuilt (returns True) when the space changed."""
    enc = cache.get("encoding")
    if isinstance(enc, SpaceEncoding) and (enc.space is space or enc.space == space):
        return enc, False
    enc = SpaceEncoding(space)
    cache["encoding"] = enc
    return enc, True
