"""The in-process form of early stopping: a ``StopCheck`` per running trial.

Called by the controller, which hands each trial's collector a
:data:`tunery.trials.StopCheck` (so ``metrics_collector`` never imports ``earlystop``)::

    stopping = InProcessEarlyStopping(stopper, objective, StoreCompletedSource(store, exp, metric))
    check = stopping.stop_check()            # one per running trial
    decision = check(objective_observations_so_far)

One :class:`InProcessEarlyStopping` per experiment shares a single prepared
:class:`~earlystop.base.StopPolicy` between all running trials and re-prepares it only when
the set of completed trials changes. Each trial's check extends its
:class:`~earlystop.base.RunningCurve` by the observations it has not seen yet, so a call
costs O(new observations) plus an O(1) decision.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType

from earlystop.base import EarlyStopper, RunningCurve, StopPolicy, StopRule
from tunery.store.base import Store
from tunery.store.errors import NotFoundError
from tunery.trials import Objective, Observation, StopCheck, StopDecision, TrialCondition

CompletedSource = Callable[[], Mapping[str, Sequence[Observation]]]
"""Returns the completed trials to compare with: trial name -> its objective observations.

Completed trials are immutable, so the set of names identifies the snapshot. Returning the
same mapping object while nothing changed makes the check O(1); a mapping mutated in place is
noticed only when its size changes, so return a new one when the set changes."""


class InProcessEarlyStopping:
    """Early stopping for one experiment, shared by the StopChecks of its running trials.

    Thread-safe: collectors of several trials may call their checks concurrently.
    """

    def __init__(
        self, stopper: EarlyStopper, objective: Objective, completed: CompletedSource
    ) -> None:
        self.stopper = stopper
        self.objective = objective
        self._completed = completed
        self._lock = threading.Lock()
        self._snapshot: Mapping[str, Sequence[Observation]] | None = None
        self._names: frozenset[str] = frozenset()
        self._policy: StopPolicy | None = None

    def policy(self) -> StopPolicy:
        """The policy for the current completed set, re-prepared only when it changed."""
        snapshot = self._completed()
        with self._lock:
            unchanged = (
                snapshot is self._snapshot and len(snapshot) == len(self._names)
            ) or snapshot.keys() == self._names
            if self._policy is not None and unchanged:
                self._snapshot = snapshot
                return self._policy
            policy = self.stopper.prepare(self.objective, snapshot.values())
            self._policy, self._snapshot, self._names = policy, snapshot, frozenset(snapshot)
            return policy

    def rules(self) -> list[StopRule]:
        """Katib's wire rules for a new trial, from the current completed set."""
        return self.policy().rules()

    def stop_check(self) -> StopCheck:
        """A fresh check for one running trial (keeps that trial's running curve)."""
        return _TrialStopCheck(self)


class _TrialStopCheck:
    """``StopCheck`` of one trial: called with all its objective observations so far, in
    report order (append-only). A shorter list or a changed first observation means the
    trial's reports were replaced, and the curve is rebuilt from scratch."""

    __slots__ = ("_curve", "_first", "_seen", "_stopping")

    def __init__(self, stopping: InProcessEarlyStopping) -> None:
        self._stopping = stopping
        self._curve = RunningCurve(stopping.objective)
        self._seen = 0
        self._first: Observation | None = None

    def __call__(self, observations: Sequence[Observation]) -> StopDecision:
        count = len(observations)
        if count < self._seen or (self._seen and observations[0] != self._first):
            self._curve = RunningCurve(self._stopping.objective)
            self._seen = 0
        for index in range(self._seen, count):
            self._curve.add(observations[index])
        self._seen = count
        self._first = observations[0] if count else None
        return self._stopping.policy().decide_curve(self._curve)


def make_stop_check(
    stopper: EarlyStopper, objective: Objective, completed: CompletedSource
) -> StopCheck:
    """A StopCheck for one running trial (use :class:`InProcessEarlyStopping` directly to
    share the prepared policy between the trials of an experiment)."""
    return InProcessEarlyStopping(stopper, objective, completed).stop_check()


class StoreCompletedSource:
    """A :data:`CompletedSource` reading an experiment's Succeeded trials from a Store (or
    the trials in ``conditions``: a stopper's ``compared_conditions``; all are terminal).

    Observations of a completed trial are read once and cached (completed trials are
    immutable); the list of Succeeded trials is re-read at most every ``refresh_s`` seconds,
    so a collector calling on every metric line does not query the database each time.
    The returned mapping is a new read-only snapshot only when the set changed.

    Raises (from a call):
        StoreError subclasses, e.g. StoreUnavailableError (retryable).
    """

    def __init__(
        self,
        store: Store,
        experiment_name: str,
        metric_name: str,
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        conditions: Iterable[TrialCondition] = (TrialCondition.SUCCEEDED,),
    ) -> None:
        self.conditions = sorted(set(conditions))
        if any(c.is_active for c in self.conditions):
            raise ValueError("only terminal trials can be compared with (their logs are cached)")
        self.store = store
        self.experiment_name = experiment_name
        self.metric_name = metric_name
        self.refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: Mapping[str, Sequence[Observation]] = MappingProxyType({})
        self._read_at: float | None = None

    def __call__(self) -> Mapping[str, Sequence[Observation]]:
        with self._lock:
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self.refresh_s:
                return self._snapshot
            trials = self.store.list_trials(self.experiment_name, self.conditions)
            names = [trial.name for trial in trials]
            self._read_at = now
            if self._snapshot.keys() == set(names):
                return self._snapshot
            current: dict[str, Sequence[Observation]] = {}
            for name in names:
                cached = self._snapshot.get(name)
                current[name] = cached if cached is not None else self._read(name)
            self._snapshot = MappingProxyType(current)
            return self._snapshot

    def _read(self, trial_name: str) -> tuple[Observation, ...]:
        try:
            return tuple(self.store.get_observations(trial_name, self.metric_name))
        except NotFoundError:  # deleted between list and read: nothing to compare with
            return ()
