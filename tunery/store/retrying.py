"""RetryingStore: a :class:`Store` that waits out a database outage instead of failing.

Used by the local controller (``controller.local``), which hands it to everything it runs:
the reconcile step, the trials' metric collectors and the in-process early stopper. Each call
that fails with :class:`StoreUnavailableError` is tried again with backoff
(:class:`tunery.retry.RetryPolicy`), logging what it waits for (the database URL, password
hidden) and when it gives up; only once the database has been unavailable for longer than the
policy's limit does the error reach the caller. Every other error passes through at once.

The outage is shared by all threads using the store: it starts at the first failure and ends
at the next success, so a collector that waited first does not make the controller wait a
whole limit more.

Nothing is done twice: every Store method is one transaction, so a failed one is retried
whole. A connection can also break after the database committed but before it answered; the
writes that are not idempotent are checked before they are re-run: a trial, a batch of trials
or an experiment created by the lost attempt is returned as it is stored, and observations the
lost attempt wrote (same metric, step, value and time) are not written again. Updates set
values (compare-and-set ones find the condition they set and leave it), so a re-run is
harmless.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from tunery.retry import OutageWatch, RetryPolicy
from tunery.store.base import ExperimentRecord, Store, TrialChanges, TrialRecord, TrialUpdate
from tunery.store.errors import AlreadyExistsError, StoreError, StoreUnavailableError
from tunery.trials import Observation, TrialCondition

log = logging.getLogger(__name__)

R = TypeVar("R")


class RetryingStore(Store):
    """Wraps ``inner``; see the module docstring. ``sleep`` and ``clock`` are for tests."""

    def __init__(
        self,
        inner: Store,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self._sleep = sleep
        self._watch = OutageWatch(
            policy, f"database {getattr(inner, 'url', type(inner).__name__)}", clock=clock
        )

    def __repr__(self) -> str:
        return f"RetryingStore({self.inner!r}, limit={self.policy.limit:g}s)"

    def __getattr__(self, name: str) -> Any:  # url, backend, session_scope of a SqlStore
        return getattr(self.inner, name)

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    def in_namespace(self, namespace: str) -> RetryingStore:
        """The inner store's view of ``namespace``, retried the same way; an outage is one
        outage for this store and all its views."""
        if namespace == self.namespace:
            return self
        view = RetryingStore.__new__(RetryingStore)
        view.__dict__.update(self.__dict__)
        view.inner = self.inner.in_namespace(namespace)
        return view

    def list_namespaces(self) -> list[str]:
        return self._call(self.inner.list_namespaces)

    def trial_namespaces(self, trial_name: str) -> list[str]:
        return self._call(lambda: self.inner.trial_namespaces(trial_name))

    # -- the retry loop -------------------------------------------------------------------------
    def _call(self, call: Callable[[], R], on_retry: Callable[[], R | None] | None = None) -> R:
        """``call()``, retried while the database is unavailable. Before a retry,
        ``on_retry()`` may return the result of an attempt that did land."""
        attempts = 0  # this call's own backoff; the deadline is the shared outage's
        while True:
            try:
                if attempts and on_retry is not None:
                    landed = on_retry()
                    if landed is not None:
                        self._recovered()
                        return landed
                result = call()
            except StoreUnavailableError as exc:
                outage = self._watch.failed()
                if outage.remaining <= 0:
                    raise StoreUnavailableError(outage.gave_up(exc)) from exc
                delay = min(
                    self.policy.initial_delay * 2**attempts,
                    self.policy.max_delay,
                    outage.remaining,
                )
                attempts += 1
                level = logging.WARNING if outage.worth_logging() else logging.DEBUG
                log.log(level, "%s", outage.describe(delay, exc))
                self._sleep(delay)
                continue
            except StoreError:
                self._recovered()  # the database answered
                raise
            self._recovered()
            return result

    def _create_once(
        self,
        create: Callable[[], R],
        read_back: Callable[[], R],
        is_ours: Callable[[R], bool],
    ) -> R:
        """``create`` retried through an outage. If an attempt's answer was lost after its
        commit, the retry finds the row taken: the row that attempt wrote (``is_ours``) is
        returned instead of a false AlreadyExistsError; any other row still raises."""
        retried = False

        def attempt() -> R:
            nonlocal retried
            try:
                return create()
            except AlreadyExistsError:
                if not retried:
                    raise
                existing = read_back()  # written by the lost attempt?
                if not is_ours(existing):
                    raise
                return existing
            except StoreUnavailableError:
                retried = True
                raise

        return self._call(attempt)

    def _recovered(self) -> None:
        outage = self._watch.recovered()
        if outage is not None:
            log.warning("%s available again after %.1f s", outage.what, outage.elapsed)

    # -- experiments ----------------------------------------------------------------------------
    def create_experiment(self, name: str, spec: Mapping[str, Any]) -> ExperimentRecord:
        return self._create_once(
            lambda: self.inner.create_experiment(name, spec),
            lambda: self.inner.get_experiment(name),
            lambda existing: dict(existing.spec) == dict(spec),
        )

    def get_experiment(self, name: str) -> ExperimentRecord:
        return self._call(lambda: self.inner.get_experiment(name))

    def list_experiments(self) -> list[ExperimentRecord]:
        return self._call(self.inner.list_experiments)

    def update_experiment(
        self,
        name: str,
        *,
        spec: Mapping[str, Any] | None = None,
        status: Mapping[str, Any] | None = None,
    ) -> ExperimentRecord:
        return self._call(lambda: self.inner.update_experiment(name, spec=spec, status=status))

    def delete_experiment(self, name: str) -> None:
        self._call(lambda: self.inner.delete_experiment(name))

    # -- trials ---------------------------------------------------------------------------------
    def create_trial(self, trial: TrialRecord) -> TrialRecord:
        return self._create_once(
            lambda: self.inner.create_trial(trial),
            lambda: self.inner.get_trial(trial.name),
            lambda existing: dict(existing.assignment) == dict(trial.assignment),
        )

    def create_trials(self, trials: Sequence[TrialRecord]) -> int:
        batch = list(trials)

        def read_back() -> list[TrialRecord]:
            stored = {t.name: t for t in self.inner.list_trials(batch[0].experiment_name)}
            return [stored[t.name] for t in batch if t.name in stored]

        def is_ours(existing: list[TrialRecord]) -> bool:
            pairs = zip(existing, batch, strict=False)
            return len(existing) == len(batch) and all(
                dict(e.assignment) == dict(t.assignment) for e, t in pairs
            )

        if not batch:
            return 0
        created = self._create_once(
            lambda: [*batch] if self.inner.create_trials(batch) == len(batch) else [],
            read_back,
            is_ours,
        )
        return len(created)

    def get_trial(self, name: str) -> TrialRecord:
        return self._call(lambda: self.inner.get_trial(name))

    def list_trials(
        self, experiment_name: str, conditions: Iterable[TrialCondition] | None = None
    ) -> list[TrialRecord]:
        wanted = None if conditions is None else list(conditions)
        return self._call(lambda: self.inner.list_trials(experiment_name, wanted))

    def list_trial_changes(self, experiment_name: str, since: int | None) -> TrialChanges:
        return self._call(lambda: self.inner.list_trial_changes(experiment_name, since))

    def best_trial(self, experiment_name: str) -> TrialRecord | None:
        return self._call(lambda: self.inner.best_trial(experiment_name))

    def list_trials_by_objective(
        self,
        experiment_name: str,
        *,
        limit: int | None = None,
        offset: int = 0,
        exclude_failed: bool = False,
    ) -> list[TrialRecord]:
        return self._call(
            lambda: self.inner.list_trials_by_objective(
                experiment_name, limit=limit, offset=offset, exclude_failed=exclude_failed
            )
        )

    def update_trial(self, name: str, **fields: Any) -> TrialRecord:
        if fields.get("expect_condition") is not None:
            fields["expect_condition"] = list(fields["expect_condition"])
        return self._call(lambda: self.inner.update_trial(name, **fields))

    def update_trials(
        self,
        updates: Sequence[TrialUpdate],
        observations: Mapping[str, Sequence[Observation]] | None = None,
    ) -> list[TrialRecord]:
        """Retried through an outage; if an attempt's answer was lost after its commit, its
        observations are found stored and the retry leaves them out (the updates are
        compare-and-set or idempotent: applying them again changes nothing)."""
        batch = list(updates)
        rows = {name: list(obs) for name, obs in (observations or {}).items() if obs}
        attempts = 0

        def attempt() -> list[TrialRecord]:
            nonlocal attempts, rows
            attempts += 1
            if attempts > 1 and rows and all(self._landed(n, r) for n, r in rows.items()):
                rows = {}  # the lost attempt committed: the transaction wrote all of them
            return self.inner.update_trials(batch, rows or None)

        return self._call(attempt)

    def write_trials(
        self,
        created: Sequence[TrialRecord],
        updates: Sequence[TrialUpdate],
        observations: Mapping[str, Sequence[Observation]] | None = None,
    ) -> list[TrialRecord]:
        """Retried through an outage. If an attempt's answer was lost after its commit, the
        created trials are found stored as written (the transaction landed whole): the retry
        then only reads the updated trials back, by applying the updates again (they are
        compare-and-set or idempotent)."""
        batch, changes = list(created), list(updates)
        rows = {name: list(obs) for name, obs in (observations or {}).items() if obs}
        if not batch:
            return self.update_trials(changes, rows or None)
        attempts = 0

        def landed() -> bool:
            stored = {t.name: t for t in self.inner.list_trials(batch[0].experiment_name)}
            return all(
                t.name in stored and dict(stored[t.name].assignment) == dict(t.assignment)
                for t in batch
            )

        def attempt() -> list[TrialRecord]:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and landed():
                return self.inner.update_trials(changes) if changes else []
            return self.inner.write_trials(batch, changes, rows or None)

        return self._call(attempt)

    # -- observation logs -----------------------------------------------------------------------
    def add_observations(self, trial_name: str, observations: Sequence[Observation]) -> int:
        batch = list(observations)

        def landed() -> int | None:
            return len(batch) if self._landed(trial_name, batch) else None

        return self._call(lambda: self.inner.add_observations(trial_name, batch), landed)

    def _landed(self, trial_name: str, batch: Sequence[Observation]) -> bool:
        """Whether the store holds every row of ``batch`` (an attempt whose answer was lost
        committed them)."""
        stored = collections.Counter(map(_key, self.inner.get_observations(trial_name)))
        wanted = collections.Counter(map(_key, batch))
        return all(stored[k] >= n for k, n in wanted.items())

    def get_observations(
        self,
        trial_name: str,
        metric_name: str | None = None,
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
    ) -> list[Observation]:
        return self._call(
            lambda: self.inner.get_observations(trial_name, metric_name, start_time, end_time)
        )

    def observation_counts(self, trial_name: str) -> dict[str, int]:
        return self._call(lambda: self.inner.observation_counts(trial_name))

    def delete_observations(self, trial_name: str) -> None:
        self._call(lambda: self.inner.delete_observations(trial_name))

    def count_trials(self, experiment_name: str) -> dict[TrialCondition, int]:
        return self._call(lambda: self.inner.count_trials(experiment_name))

    def get_observations_for_trials(
        self, trial_names: Iterable[str], metric_name: str | None = None
    ) -> dict[str, list[Observation]]:
        names = list(trial_names)
        return self._call(lambda: self.inner.get_observations_for_trials(names, metric_name))

    # -- lifecycle ------------------------------------------------------------------------------
    def ping(self) -> None:
        self.inner.ping()  # a probe: answers now, never waits

    def close(self) -> None:
        self.inner.close()


def _key(obs: Observation) -> tuple[str, int, str, dt.datetime]:
    return (obs.metric_name, obs.step, obs.value, obs.time)
