"""``grid``: every combination of the parameters' feasible values, each once.

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. The grid
is the product of each parameter's values (ints by their step, default 1; doubles need a
step; lists as given), visited in row-major order (the last parameter varies fastest), or in
a seeded pseudo-random order when ``random_state`` is set (Katib's optuna GridSampler also
shuffles by seed), so that a ``maxTrialCount`` below the grid size still spreads out. The
next points are the first ones in that order that no trial holds, whatever the trial's state,
so the service is stateless and a restart never repeats a point. When fewer points remain
than requested it raises :class:`SpaceExhaustedError`. Validation follows Katib: a double
without a step and ``maxTrialCount`` above the number of combinations are rejected; beyond
Katib, a grid whose parameters have more than :data:`MAX_GRID_VALUES` values together is
rejected from its arithmetic size, before anything is listed.

Conditional spaces: the grid holds each *active* combination once (an inactive parameter takes
no value, so ``optimizer=adam`` is not repeated for every momentum of ``sgd``). Such a grid is
listed in memory in the same row-major order, so its full product is capped at
:data:`MAX_CONDITIONAL_PRODUCT` points.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from suggestion.algorithms._encoding import Key, encoding_for
from suggestion.algorithms._history import TrialCache
from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    InvalidSettingsError,
    SpaceExhaustedError,
    SuggestRequest,
    UnsupportedSpaceError,
)
from tunery.space import Assignment, ParamValue, SearchSpace, SpaceError
from tunery.trials import Objective


class _Shuffle:
    """A seeded pseudo-random permutation of ``range(n)`` computed one index at a time (a
    Feistel network over the next even number of bits, cycle-walking back into range), so
    huge grids are shuffled without materialising them."""

    _ROUNDS = 4

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        bits = max(2, (n - 1).bit_length())
        bits += bits % 2
        self.half = bits // 2
        self.mask = (1 << self.half) - 1
        rng = np.random.default_rng([seed, 0x6121D])
        self.keys = [int(k) for k in rng.integers(0, 1 << 32, size=self._ROUNDS)]

    def __call__(self, i: int) -> int:
        half, mask = self.half, self.mask
        while True:
            left, right = i >> half, i & mask
            for key in self.keys:
                mixed = ((right * 0x9E3779B1) ^ key) & 0xFFFFFFFF
                mixed = ((mixed ^ (mixed >> 15)) * 0x85EBCA6B) & 0xFFFFFFFF
                left, right = right, left ^ ((mixed ^ (mixed >> 13)) & mask)
            i = (left << half) | right
            if i < self.n:
                return i


MAX_GRID_VALUES = 100_000
"""Most grid values the parameters of one grid may have together. Each parameter's values are
listed in memory (their product never is), so a larger grid (a step of 1e-12 over [0, 1]) is
refused from its sizes, computed arithmetically, before anything is enumerated."""


MAX_CONDITIONAL_PRODUCT = 1_000_000
"""Largest product of the axes of a conditional grid (it is listed point by point)."""


def _combinations(space: SearchSpace) -> int:
    """Number of grid points (active combinations of a conditional space)."""
    product = math.prod(_axis_sizes(space))
    if not space.is_conditional:
        return product
    if product > MAX_CONDITIONAL_PRODUCT:
        raise UnsupportedSpaceError(
            f"a conditional grid is listed point by point and its parameters' values may "
            f"combine into at most {MAX_CONDITIONAL_PRODUCT} points ({product} here); use "
            "larger steps or another algorithm"
        )
    size = space.grid_size()
    assert size is not None
    return size


def _axis_sizes(space: SearchSpace) -> list[int]:
    """Number of grid values of each parameter, computed without listing them.

    Raises:
        UnsupportedSpaceError: a double without a step, or more than :data:`MAX_GRID_VALUES`
            values in all; the message names the largest parameter.
    """
    sizes = []
    for parameter in space:
        size = parameter.grid_size()
        if size is None:  # a double without a step: Katib's message comes from grid_values
            try:
                parameter.grid_values()
            except SpaceError as exc:
                raise UnsupportedSpaceError(str(exc)) from None
            raise AssertionError("grid_values accepted a continuous parameter")
        sizes.append(size)
    if sum(sizes) > MAX_GRID_VALUES:
        size, name = max(zip(sizes, space.names, strict=True))
        raise UnsupportedSpaceError(
            f"parameter {name}: its grid has {size} values, and a grid's parameters may have "
            f"at most {MAX_GRID_VALUES} values together; use a larger step or another algorithm"
        )
    return sizes


class GridSearch(Algorithm):
    """Exhaustive grid search."""

    name = "grid"
    capabilities: ClassVar[frozenset[str]] = frozenset({"finite"})

    def __init__(self, settings: AlgorithmSettings | None = None) -> None:
        super().__init__(settings)
        self._cache: dict[str, object] = {}
        self._trials: TrialCache | None = None
        self._axes: list[tuple[ParamValue, ...]] = []
        self._shuffle: _Shuffle | None = None
        self._order: list[int] = []  # the first grid indices in visiting order (shuffled)
        self._axis_index: list[dict[ParamValue, int]] = []
        self._positions: dict[Key, int] = {}
        self._points: list[Assignment] | None = None  # a conditional grid, listed
        self._point_index: dict[Key, int] = {}

    @classmethod
    def validate(
        cls,
        space: SearchSpace,
        objective: Objective,
        settings: AlgorithmSettings,
        max_trial_count: int | None = None,
    ) -> None:
        combinations = _combinations(space)
        if max_trial_count is not None and max_trial_count > combinations:
            raise InvalidSettingsError(
                f"Max Trial Count: {max_trial_count} > all possible search combinations: "
                f"{combinations}"
            )

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        encoding, changed = encoding_for(self._cache, request.space)
        if changed or self._trials is None:
            self.validate(request.space, request.objective, self.settings)
            self._trials = TrialCache(encoding)
            self._axes = [p.grid_values() for p in request.space]
            self._axis_index = [{v: i for i, v in enumerate(a)} for a in self._axes]
            self._positions = {}
            self._points = None
            if request.space.is_conditional:
                self._points = list(request.space.grid())
                self._point_index = {encoding.key(a): i for i, a in enumerate(self._points)}
            size = self._size()
            self._order = []
            self._shuffle = None
            if self.settings.random_state is not None:
                self._shuffle = _Shuffle(size, self.settings.random_state)
        used = self._used_indices(self._trials.keys(request))
        names = request.space.names
        radices = [len(a) for a in self._axes]
        size = self._size()
        out: list[Assignment] = []
        position = 0
        while len(out) < request.count and position < size:
            index = self._index_at(position)
            position += 1
            if index not in used:
                out.append(self._point(index, radices, names))
        if len(out) < request.count:
            raise SpaceExhaustedError(
                f"the grid is exhausted: {len(out)} of its {size} points are not yet in a "
                f"trial, but {request.count} were requested"
            )
        return out

    def _size(self) -> int:
        if self._points is not None:
            return len(self._points)
        return math.prod(len(a) for a in self._axes)

    def _index_at(self, position: int) -> int:
        """The grid index visited at ``position`` (row-major, or the seeded shuffle)."""
        if self._shuffle is None:
            return position
        while len(self._order) <= position:
            self._order.append(self._shuffle(len(self._order)))
        return self._order[position]

    def _used_indices(self, keys: set[Key]) -> set[int]:
        """Grid indices of the trials' assignments (assignments off the grid are ignored)."""
        if self._points is not None:
            return {self._point_index[k] for k in keys if k in self._point_index}
        positions: dict[Key, int] = {}
        for key in keys:
            index = self._positions.get(key)
            if index is None:
                index = 0
                for value, lookup in zip(key, self._axis_index, strict=True):
                    digit = lookup.get(value)  # type: ignore[call-overload]
                    if digit is None:
                        index = -1
                        break
                    index = index * len(lookup) + digit
            positions[key] = index
        self._positions = positions
        return {i for i in positions.values() if i >= 0}

    def _point(self, index: int, radices: list[int], names: tuple[str, ...]) -> Assignment:
        if self._points is not None:
            return dict(self._points[index])
        values: list[ParamValue] = []
        for axis, radix in zip(reversed(self._axes), reversed(radices), strict=True):
            index, digit = divmod(index, radix)
            values.append(axis[digit])
        return dict(zip(names, reversed(values), strict=True))
