"""The trial history as the models see it, kept incrementally per algorithm instance.

Called by the algorithm modules. :class:`TrialCache` turns ``SuggestRequest.trials`` into
unit-cube rows (:mod:`suggestion.algorithms._encoding`), objective values in minimisation
form and the set of canonical keys of every existing trial. A request with N known and k new
or changed trials costs O(k) encoding work: the leading trials that are the very same objects
as last time keep their rows. The result never depends on what was cached. Each completed
trial's total constraint violation (0 when feasible) rides along for the constrained models.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, count, islice
from operator import is_not

import numpy as np

from suggestion.algorithms._encoding import Key, SpaceEncoding
from suggestion.algorithms.base import SuggestRequest
from tunery.trials import ObjectiveType, TrialResult


class History:
    """The part of a request the models use, in request order.

    ``losses`` are objective values turned into minimisation (negated when maximising);
    completed trials with a non-finite value or an undecodable assignment are left out of
    ``x_completed`` (but still count as existing points in ``keys``). ``settled`` is how many
    of the completed rows come before the first pending trial: the prefix of the history that
    can no longer change (CMA-ES tells only that prefix). ``rows`` holds each completed row's
    index among the request's trials.
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
        violations: np.ndarray | None = None,
        rows: np.ndarray | None = None,
    ) -> None:
        self.keys = keys
        self.x_completed = x_completed  # (n, d) unit coordinates
        self.losses = losses  # (n,)
        self.completed = completed  # the n completed trials, in order
        self.x_pending = x_pending  # (m, d)
        self.n_trials = n_trials
        self.settled = settled
        # (n,) total constraint violation of each completed row: 0 feasible, inf unknown
        self.violations = np.zeros(len(losses)) if violations is None else violations
        # (n,) ascending: each completed row's index among the request's trials (the identity
        # of a row from one request to the next, which the models' caches key on)
        self.rows = np.arange(len(losses)) if rows is None else rows

    @property
    def constrained(self) -> bool:
        """Whether some completed trial is infeasible (the models then rank by feasibility)."""
        return bool(np.any(self.violations > 0))


@dataclass
class _Row:
    assignment: Mapping[str, object]
    key: Key
    unit: np.ndarray
    valid: bool


class TrialCache:
    """Per-algorithm-instance cache of each trial's key and unit coordinates.

    Requests carry the whole history, mostly unchanged: the leading trials that are the very
    same objects as in the previous request (the service reuses them), or equal ones, keep
    their rows, found at C speed; only the rest is processed (O(k) for k new or changed
    trials). A trial whose state changed keeps its row when its assignment is the same object
    or equal. The result never depends on what was cached: a fresh cache gives the same
    history.
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
        self._viol = np.empty(0)
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
                self.encoding.is_valid(trial.assignment, unit),
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
        elif list(islice(trials, same)) == prev[:same]:  # C speed: identical objects are equal
            first_change = same
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
            self._viol = _grow(self._viol, capacity)
        for i in range(first_change, n):
            trial = trials[i]
            row = self._row(trial)
            self._rows.append(row)
            self._key_counts[row.key] = self._key_counts.get(row.key, 0) + 1
            self._unit[i] = row.unit
            self._valid[i] = row.valid
            self._pending[i] = trial.is_pending
            self._viol[i] = trial.violation
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
            violations=self._viol[:n][completed],
            rows=index,
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
