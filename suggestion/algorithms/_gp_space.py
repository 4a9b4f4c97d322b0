"""Unit-cube encoding of a search space for the Bayesian optimiser's models.

Private helper of ``suggestion.algorithms.bayesian``. One column per parameter:

- continuous doubles: the value's position in [min, max], on a log axis for logUniform and
  logNormal (normal is treated like uniform on the same box: the GP models the objective,
  not a prior over parameters);
- ints, doubles with a step, and numeric discrete lists ("grid" columns, ``K`` values): value
  ``k`` sits at the centre of the ``k``-th of ``K`` equal cells, ``(k + 0.5) / K`` (log-spaced
  grids keep their log spacing inside ``[0.5/K, 1 - 0.5/K]``; discrete lists are ordinal, in
  sorted order), so every feasible value owns the same share of the cube;
- categoricals: the choice index itself, which the kernel compares by equality (Hamming).

:meth:`UnitCube.snap` moves any point onto the nearest encoded feasible point and
:meth:`UnitCube.decode` turns one into an assignment of typed values (steps via
:meth:`tunery.space.Parameter.snap`, ints as ``int``), so ``encode(decode(u)) == snap(u)``.

Conditional spaces: an inactive parameter's column is imputed with a constant (the centre 0.5
for numeric columns, -1, a category of its own, for categoricals), both when a trial is
encoded and whenever a candidate is snapped, so the GP compares trials on the parameters they
share and sees "inactive" as one more value; :meth:`UnitCube.decode` drops inactive parameters.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tunery.space import Assignment, Parameter, ParameterType, ParamValue, SearchSpace

EXHAUSTIVE_LIMIT = 16
"""Grid columns with at most this many values are searched value by value, not relaxed."""


class ColumnKind(enum.Enum):
    CONTINUOUS = "continuous"
    GRID = "grid"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class _Column:
    param: Parameter
    kind: ColumnKind
    size: int  # number of feasible values; 0 for continuous columns
    log: bool
    low: float  # axis bounds (log-transformed when log) of the first/last feasible value
    high: float
    values: tuple[ParamValue, ...] = ()  # sorted numeric list (discrete) or choices (categorical)

    # -- one column --------------------------------------------------------------------------

    def encode(self, value: object) -> float | None:
        p = self.param
        if self.kind is ColumnKind.CATEGORICAL:
            try:
                return float(self.values.index(value))  # type: ignore[arg-type]
            except ValueError:
                return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        v = float(value)
        if not math.isfinite(v):
            return None
        if p.type is ParameterType.DISCRETE:
            nearest = min(range(self.size), key=lambda k: abs(float(self.values[k]) - v))  # type: ignore[arg-type]
            return (nearest + 0.5) / self.size
        if self.log:
            if v <= 0:
                return None
            v = math.log(v)
        if self.kind is ColumnKind.CONTINUOUS:
            pos = (v - self.low) / (self.high - self.low)
            return min(max(pos, 0.0), 1.0)
        if self.size == 1:
            return 0.5
        pos = (v - self.low) / (self.high - self.low)
        pos = min(max(pos, 0.0), 1.0)
        return 0.5 / self.size + pos * (1.0 - 1.0 / self.size)

    def index_of(self, u: np.ndarray) -> np.ndarray:
        """Feasible-value index (grid and categorical columns) of positions ``u``."""
        if self.kind is ColumnKind.CATEGORICAL:
            return np.clip(np.rint(u), 0, self.size - 1).astype(np.int64)
        if self.log and self.param.type is not ParameterType.DISCRETE and self.size > 1:
            # Nearest on the log axis: invert the position, then compare the two neighbours.
            assert self.param.low is not None and self.param.step is not None
            pos = np.clip((u - 0.5 / self.size) / (1.0 - 1.0 / self.size), 0.0, 1.0)
            x = np.exp(self.low + pos * (self.high - self.low))
            lo = np.clip(np.floor((x - self.param.low) / self.param.step), 0, self.size - 1)
            hi = np.minimum(lo + 1, self.size - 1)
            grid_lo = np.log(self.param.low + lo * self.param.step)
            grid_hi = np.log(self.param.low + hi * self.param.step)
            logx = np.log(x)
            return np.where(np.abs(grid_hi - logx) < np.abs(logx - grid_lo), hi, lo).astype(
                np.int64
            )
        return np.clip(np.floor(u * self.size), 0, self.size - 1).astype(np.int64)

    def position_of_index(self, k: np.ndarray) -> np.ndarray:
        if self.kind is ColumnKind.CATEGORICAL:
            return k.astype(float)
        if self.log and self.param.type is not ParameterType.DISCRETE and self.size > 1:
            assert self.param.low is not None and self.param.step is not None
            logv = np.log(self.param.low + k * self.param.step)
            pos = (logv - self.low) / (self.high - self.low)
            return 0.5 / self.size + np.clip(pos, 0.0, 1.0) * (1.0 - 1.0 / self.size)
        return (k + 0.5) / self.size

    def value_of_index(self, k: int) -> ParamValue:
        if self.kind is ColumnKind.CATEGORICAL or self.param.type is ParameterType.DISCRETE:
            return self.values[k]
        p = self.param
        assert p.low is not None
        if p.type is ParameterType.INT:
            return int(p.low) + k * int(p.step or 1)
        assert p.step is not None
        return p.snap(p.low + k * p.step)

    def snap(self, u: np.ndarray) -> np.ndarray:
        if self.kind is ColumnKind.CONTINUOUS:
            return np.clip(u, 0.0, 1.0)
        return self.position_of_index(self.index_of(u))

    def decode(self, u: float) -> ParamValue:
        if self.kind is ColumnKind.CONTINUOUS:
            p = self.param
            assert p.low is not None and p.high is not None
            x = self.low + min(max(u, 0.0), 1.0) * (self.high - self.low)
            value = math.exp(x) if self.log else x
            return min(max(float(value), float(p.low)), float(p.high))
        return self.value_of_index(int(self.index_of(np.array([u]))[0]))

    def choices(self) -> np.ndarray:
        """Encoded positions of every feasible value (grid and categorical columns)."""
        return self.position_of_index(np.arange(self.size))


def _column(p: Parameter) -> _Column:
    if p.type is ParameterType.CATEGORICAL:
        return _Column(p, ColumnKind.CATEGORICAL, len(p.values), False, 0.0, 1.0, p.values)
    if p.type is ParameterType.DISCRETE:
        ordered = tuple(sorted(p.values, key=float))
        return _Column(p, ColumnKind.GRID, len(ordered), False, 0.0, 1.0, ordered)
    assert p.low is not None and p.high is not None
    log = p.distribution.is_log and p.low > 0
    size = p.grid_size()
    if size is None:
        low, high = float(p.low), float(p.high)
        if log:
            low, high = math.log(low), math.log(high)
        return _Column(p, ColumnKind.CONTINUOUS, 0, log, low, high)
    step = float(p.step or 1)
    first, last = float(p.low), float(p.low) + (size - 1) * step
    if log:
        first, last = math.log(first), math.log(last)
    if size == 1:
        last = first + 1.0
    return _Column(p, ColumnKind.GRID, size, log, first, last)


class UnitCube:
    """The encoding of one search space (see the module docstring)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.columns = tuple(_column(p) for p in space.parameters)
        self.dim = len(self.columns)
        kinds = [c.kind for c in self.columns]
        self.is_cat = np.array([k is ColumnKind.CATEGORICAL for k in kinds])
        # Columns optimised by gradient (continuous, or a grid too large to enumerate) and
        # columns searched value by value.
        self.relaxed = np.array(
            [
                k is ColumnKind.CONTINUOUS or (k is ColumnKind.GRID and c.size > EXHAUSTIVE_LIMIT)
                for k, c in zip(kinds, self.columns, strict=True)
            ]
        )
        self.enumerated = np.flatnonzero(~self.relaxed)
        self.finite_size = space.grid_size()
        self.conditional = space.is_conditional
        self.imputed = np.array([-1.0 if cat else 0.5 for cat in self.is_cat])
        index = {c.param.name: j for j, c in enumerate(self.columns)}
        # (column, parent column, allowed parent values), parents before children
        self._conditions = [
            (index[p.name], index[p.condition.parent], p.condition.values)
            for p in space.parents_first
            if p.condition is not None
        ]

    def encode(self, assignment: Mapping[str, object]) -> np.ndarray | None:
        """Encoded row of an assignment, or None if some value cannot be placed."""
        row = np.empty(self.dim)
        active = self.space.active(assignment) if self.conditional else None
        for j, column in enumerate(self.columns):
            if active is not None and column.param.name not in active:
                if column.param.name in assignment:
                    return None
                row[j] = self.imputed[j]
                continue
            if column.param.name not in assignment:
                return None
            u = column.encode(assignment[column.param.name])
            if u is None:
                return None
            row[j] = u
        return row

    def snap(self, u: np.ndarray) -> np.ndarray:
        """Nearest encoded feasible points of the rows of ``u`` (2-D)."""
        out = np.empty_like(u, dtype=float)
        for j, column in enumerate(self.columns):
            out[:, j] = column.snap(u[:, j])
        if self.conditional:
            self.impute(out)
        return out

    def impute(self, u: np.ndarray) -> None:
        """Set, in place, the columns that each (snapped) row makes inactive to their
        imputed constant."""
        active = np.ones(u.shape, dtype=bool)
        for j, parent, allowed in self._conditions:
            column = self.columns[parent]
            if column.kind is ColumnKind.CONTINUOUS:
                values = [column.decode(float(x)) for x in u[:, parent]]
            else:
                values = [column.value_of_index(int(k)) for k in column.index_of(u[:, parent])]
            holds = np.array([v in allowed for v in values], dtype=bool)
            active[:, j] = active[:, parent] & holds
        u[~active] = np.broadcast_to(self.imputed, u.shape)[~active]

    def decode(self, row: np.ndarray) -> Assignment:
        full = {c.param.name: c.decode(float(u)) for c, u in zip(self.columns, row, strict=True)}
        return self.space.prune(full) if self.conditional else full

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Snapped points from uniform [0, 1) samples (categoricals: index = floor(u K))."""
        u = unit.copy()
        for j, column in enumerate(self.columns):
            if column.kind is ColumnKind.CATEGORICAL:
                u[:, j] = np.minimum(np.floor(u[:, j] * column.size), column.size - 1)
        return self.snap(u)

    def perturb(self, centres: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
        """Snapped Gaussian perturbations of ``centres``; each categorical switches to a random
        choice with probability 1/dim."""
        u = centres + sigma * rng.standard_normal(centres.shape)
        for j, column in enumerate(self.columns):
            if column.kind is ColumnKind.CATEGORICAL:
                switch = rng.random(len(u)) < 1.0 / self.dim
                u[:, j] = np.where(
                    switch, rng.integers(0, column.size, len(u)).astype(float), centres[:, j]
                )
        return self.snap(np.clip(u, 0.0, None))

    def enumerate_all(self) -> np.ndarray:
        """Every feasible encoded point (only for finite spaces; the caller bounds the size)."""
        axes = [c.choices() for c in self.columns]
        points = np.array(list(itertools.product(*axes)), dtype=float).reshape(-1, self.dim)
        if self.conditional:
            self.impute(points)
            points = np.unique(points, axis=0)
        return points
