"""TrialView: the reconciler's incremental picture of one experiment's trials.

Used by :class:`controller.reconcile.Reconciler`, fed from
:meth:`tunery.store.Store.list_trial_changes` with only the trials written since its previous
read. It keeps, up to date per change rather than recomputed per step: the records in creation
order, the number of trials per condition, the trials a step must look at (Created; Running or
early stopped and not yet ended), the best trial (Katib's rule: best finite objective value,
Failed trials excluded, the earliest created wins ties) and the most recent names per condition
for the bounded lists of the status document. Its cost per step grows with what changed, not
with the history.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from controller.status import TrialCounts, trial_is_feasible, trial_objective_value
from tunery.store.base import TrialRecord
from tunery.trials import Objective, TrialCondition


def _needs_finishing(trial: TrialRecord) -> bool:
    """Running, or early stopped and its job not yet ended: the step polls these."""
    return trial.condition is TrialCondition.RUNNING or (
        trial.condition is TrialCondition.EARLY_STOPPED and trial.completion_time is None
    )


class TrialView:
    """See the module docstring. ``seq`` is the store's change counter read so far (None
    before the first read, which lists every trial)."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.seq: int | None = None
        self._records: list[TrialRecord] = []
        self._position: dict[str, int] = {}
        self._by_condition: dict[TrialCondition, dict[str, None]] = {c: {} for c in TrialCondition}
        self._unfinished: dict[str, None] = {}
        self._best: tuple[int, float] | None = None  # (position, value)

    @classmethod
    def of(cls, trials: Iterable[TrialRecord], objective: Objective) -> TrialView:
        """A view of ``trials`` (in creation order), e.g. for a one-off status document."""
        view = cls(objective)
        view.apply(trials)
        return view

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, name: object) -> bool:
        return name in self._position

    def apply(self, changed: Iterable[TrialRecord]) -> list[TrialRecord]:
        """Take in trials created or updated (new ones in creation order); returns those that
        really changed (a record equal to the one held is skipped)."""
        applied = []
        rescan = False
        for trial in changed:
            position = self._position.get(trial.name)
            if position is None:
                position = len(self._records)
                self._position[trial.name] = position
                self._records.append(trial)
            else:
                old = self._records[position]
                if old == trial:
                    continue
                self._records[position] = trial
                del self._by_condition[old.condition][trial.name]
            applied.append(trial)
            self._by_condition[trial.condition][trial.name] = None
            if _needs_finishing(trial):
                self._unfinished[trial.name] = None
            else:
                self._unfinished.pop(trial.name, None)
            value = self._value(trial)
            if self._best is not None and self._best[0] == position:
                if value is None or self.objective.is_better(self._best[1], value):
                    rescan = True  # the best got worse (rare): look at every trial again
                else:
                    self._best = (position, value)
            elif value is not None and self._beats(position, value):
                self._best = (position, value)
        if rescan:
            self._best = None
            for position, trial in enumerate(self._records):
                value = self._value(trial)
                if value is not None and self._beats(position, value):
                    self._best = (position, value)
        return applied

    def _value(self, trial: TrialRecord) -> float | None:
        if trial.condition is TrialCondition.FAILED:
            return None
        if not trial_is_feasible(trial, self.objective):
            return None  # never the best
        return trial_objective_value(trial, self.objective)

    def _beats(self, position: int, value: float) -> bool:
        if self._best is None:
            return True
        best_position, best_value = self._best
        if self.objective.is_better(value, best_value):
            return True
        return value == best_value and position < best_position

    # -- reads ----------------------------------------------------------------------------------

    def trials(self) -> list[TrialRecord]:
        """Every trial in creation order (a copy of the list of references)."""
        return list(self._records)

    def get(self, name: str) -> TrialRecord:
        return self._records[self._position[name]]

    def with_condition(self, *conditions: TrialCondition) -> list[TrialRecord]:
        """The trials in these conditions, in creation order."""
        names = itertools.chain.from_iterable(self._by_condition[c] for c in conditions)
        return sorted((self.get(n) for n in names), key=lambda t: self._position[t.name])

    def unfinished(self) -> list[TrialRecord]:
        """Running trials and early-stopped ones whose job has not ended, in creation order."""
        return sorted(
            (self.get(n) for n in self._unfinished), key=lambda t: self._position[t.name]
        )

    def counts(self) -> TrialCounts:
        by = {c: len(names) for c, names in self._by_condition.items()}
        return TrialCounts(
            total=len(self._records),
            pending=by[TrialCondition.CREATED],
            running=by[TrialCondition.RUNNING],
            succeeded=by[TrialCondition.SUCCEEDED],
            failed=by[TrialCondition.FAILED],
            killed=by[TrialCondition.KILLED],
            early_stopped=by[TrialCondition.EARLY_STOPPED],
            metrics_unavailable=by[TrialCondition.METRICS_UNAVAILABLE],
        )

    def best(self) -> tuple[TrialRecord, float] | None:
        """The optimal trial and its objective value, None while no trial has one."""
        if self._best is None:
            return None
        return self._records[self._best[0]], self._best[1]

    def recent_names(self, condition: TrialCondition, limit: int) -> Sequence[str]:
        """The names of the last ``limit`` trials that entered ``condition``, oldest first."""
        names = self._by_condition[condition]
        if len(names) <= limit:
            return list(names)
        return list(itertools.islice(reversed(names), limit))[::-1]
