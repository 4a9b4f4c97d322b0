"""The Store interface and the records it stores: experiments, trials, observation logs.

Kernel module, free of SQLAlchemy: every package codes against :class:`Store`; only
``tunery.store.sql`` implements it (SQLite, PostgreSQL, MySQL/MariaDB). Each method is one
transaction. Records are frozen values; updates go through the store.

Error tree (all in ``tunery.store.errors``)::

    StoreError(Exception)
     ├── NotFoundError(StoreError, KeyError)        experiment/trial does not exist
     ├── AlreadyExistsError(StoreError, ValueError) name taken
     ├── AmbiguousTrialError(StoreError)            a trial name held in several namespaces
     └── StoreUnavailableError(StoreError)          cannot connect / operational error (retryable)
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunery.store.errors import AmbiguousTrialError
from tunery.trials import Observation, TrialCondition

DEFAULT_NAMESPACE = "default"
"""The namespace a store is bound to unless told otherwise (Katib's default namespace); local
runs (CLI, SDK, ``tune()``, dashboard) use it."""


NAMESPACE_LENGTH = 63
"""Longest namespace (a Kubernetes namespace is a DNS label: at most 63 characters)."""


def check_key(what: str, value: object, limit: int, why: str = "") -> None:
    """Raises ValueError, saying why, unless ``value`` is a non-empty string of at most
    ``limit`` characters (``what`` names it in the message, ``why`` explains the limit)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise ValueError(
            f"{what} {value[:40]!r}... is {len(value)} characters long; "
            f"the store allows at most {limit}{why}"
        )


def check_namespace(namespace: object) -> None:
    """Raises ValueError, saying why, unless ``namespace`` is a namespace a store can hold."""
    check_key("namespace", namespace, NAMESPACE_LENGTH, " (a Kubernetes namespace's limit)")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Condition:
    """A Katib status condition (experiment or trial)."""

    type: str
    status: bool = True
    reason: str = ""
    message: str = ""
    last_transition_time: dt.datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": "True" if self.status else "False",
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Condition:
        return cls(
            type=data["type"],
            status=data.get("status", "True") == "True",
            reason=data.get("reason", ""),
            message=data.get("message", ""),
            last_transition_time=dt.datetime.fromisoformat(data["lastTransitionTime"]),
        )


@dataclass(frozen=True)
class ExperimentRecord:
    """A stored experiment.

    ``spec`` is the validated, defaulted Experiment document (the whole YAML as a dict,
    ``apiVersion``/``kind``/``metadata``/``spec``); ``status`` Katib's status fields as a
    dict (conditions, counters, currentOptimalTrial, ...), owned by the controller.
    """

    name: str
    spec: Mapping[str, Any]
    status: Mapping[str, Any] = field(default_factory=dict)
    created_at: dt.datetime = field(default_factory=utcnow)
    updated_at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class TrialRecord:
    """A stored trial.

    ``assignment`` maps parameter names to wire strings (Katib's form). ``condition`` is the
    latest condition; ``reason``/``message`` explain it. ``runner_handle`` is what the runner
    needs to re-attach after a controller restart (e.g. ``{"pid": 123, "log": "..."}``).
    ``observation`` is the metric summary (Katib's ``status.observation``) once computed.
    """

    name: str
    experiment_name: str
    assignment: Mapping[str, str]
    condition: TrialCondition = TrialCondition.CREATED
    reason: str = "TrialCreated"
    message: str = "Trial is created"
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: dt.datetime = field(default_factory=utcnow)
    start_time: dt.datetime | None = None
    completion_time: dt.datetime | None = None
    runner_handle: Mapping[str, Any] = field(default_factory=dict)
    observation: Mapping[str, Any] = field(default_factory=dict)
    early_stopping_rules: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class TrialChanges:
    """The trials of an experiment written since a change counter value, and the counter to
    pass next time (see :meth:`Store.list_trial_changes`)."""

    trials: Sequence[TrialRecord]
    seq: int
    experiment: ExperimentRecord | None = None
    """The experiment, read in the same transaction where the store does so (SqlStore), so a
    reconcile step reads its experiment and trials at once; None: read it separately."""


@dataclass(frozen=True)
class TrialUpdate:
    """One trial's part of :meth:`Store.update_trials`: the fields of :meth:`Store.update_trial`
    (None leaves a field as it is)."""

    name: str
    condition: TrialCondition | None = None
    reason: str | None = None
    message: str | None = None
    start_time: dt.datetime | None = None
    completion_time: dt.datetime | None = None
    runner_handle: Mapping[str, Any] | None = None
    observation: Mapping[str, Any] | None = None
    early_stopping_rules: Sequence[Mapping[str, Any]] | None = None
    expect_condition: tuple[TrialCondition, ...] | None = None

    def fields(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`Store.update_trial` this update sets."""
        return {
            key: value for key, value in vars(self).items() if key != "name" and value is not None
        }


class Store(abc.ABC):
    """Narrow persistence API. Thread-safe; every method is one transaction.

    A store is bound to one namespace (:attr:`namespace`): experiments and trials are keyed by
    (namespace, name), as Katib's namespaced resources are, and every method sees only its
    namespace's. :meth:`in_namespace` gives the same store bound to another one.

    Raises:
        NotFoundError: the named experiment or trial does not exist.
        AlreadyExistsError: creating a name that exists.
        StoreUnavailableError: the database cannot be reached (retryable).
    """

    @property
    def namespace(self) -> str:
        """The namespace this store reads and writes."""
        return DEFAULT_NAMESPACE

    def in_namespace(self, namespace: str) -> Store:
        """This store bound to ``namespace`` (sharing its connections); closing the view does
        not close this store.

        Raises:
            NotImplementedError: this store holds one namespace only (the default one here).
        """
        if namespace == self.namespace:
            return self
        raise NotImplementedError(
            f"{type(self).__name__} holds namespace {self.namespace!r} only, not {namespace!r}"
        )

    def list_namespaces(self) -> list[str]:
        """Every namespace holding an experiment, sorted (for views over all of them, such as
        the operator's gauges). A store holding one namespace only (this default) lists its
        own when it has experiments."""
        return [self.namespace] if self.list_experiments() else []

    def trial_namespaces(self, trial_name: str) -> list[str]:
        """Every namespace holding a trial named ``trial_name``, sorted, whatever namespace
        this store is bound to (Katib's DBManager is given a trial name alone).

        A store holding one namespace only (this default) answers ``[]``, "no other": callers
        then use the store's own namespace, the only one it has.
        """
        return []

    def for_trial(self, trial_name: str) -> Store:
        """This store bound to the namespace of the trial ``trial_name``, for callers given a
        trial name alone (Katib's DBManager and EarlyStopping wires): the one namespace
        holding such a trial, else (no namespace holds it yet) this store.

        Raises:
            AmbiguousTrialError: several namespaces hold a trial of that name.
        """
        namespaces = self.trial_namespaces(trial_name)
        if len(namespaces) > 1:
            raise AmbiguousTrialError(
                f"trial {trial_name!r} exists in namespaces {', '.join(namespaces)}", namespaces
            )
        return self.in_namespace(namespaces[0]) if namespaces else self

    # -- experiments ----------------------------------------------------------------------------
    @abc.abstractmethod
    def create_experiment(self, name: str, spec: Mapping[str, Any]) -> ExperimentRecord: ...

    @abc.abstractmethod
    def get_experiment(self, name: str) -> ExperimentRecord: ...

    @abc.abstractmethod
    def list_experiments(self) -> list[ExperimentRecord]:
        """All experiments, oldest first."""

    @abc.abstractmethod
    def update_experiment(
        self,
        name: str,
        *,
        spec: Mapping[str, Any] | None = None,
        status: Mapping[str, Any] | None = None,
    ) -> ExperimentRecord:
        """Replace the spec and/or status (whole documents)."""

    @abc.abstractmethod
    def delete_experiment(self, name: str) -> None:
        """Delete the experiment, its trials and their observation logs."""

    # -- trials ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_trial(self, trial: TrialRecord) -> TrialRecord: ...

    def create_trials(self, trials: Sequence[TrialRecord]) -> int:
        """Create many trials of one experiment at once (a bulk import, a benchmark's fill);
        returns how many. All or none are created (SqlStore: one transaction)."""
        for trial in trials:
            self.create_trial(trial)
        return len(trials)

    @abc.abstractmethod
    def get_trial(self, name: str) -> TrialRecord: ...

    @abc.abstractmethod
    def list_trials(
        self, experiment_name: str, conditions: Iterable[TrialCondition] | None = None
    ) -> list[TrialRecord]:
        """Trials of an experiment, in creation order, optionally filtered by condition."""

    def list_trial_changes(self, experiment_name: str, since: int | None) -> TrialChanges:
        """Trials created or updated after change counter ``since`` (every trial when None),
        in creation order, and the counter to pass next time.

        Every trial write takes the next value of the experiment's counter and changes commit
        in counter order, so repeated calls see each change exactly once, however many other
        processes write. The default lists every trial each time (counter 0).
        """
        return TrialChanges(self.list_trials(experiment_name), 0)

    def best_trial(self, experiment_name: str) -> TrialRecord | None:
        """The trial with the best finite objective value by the experiment's objective
        (the metric strategy selects it; Failed trials never count; the earliest created wins
        ties), None when no trial has one."""
        ranked = _ranked(self, experiment_name, exclude_failed=True)
        return ranked[0][0] if ranked and ranked[0][1] is not None else None

    def list_trials_by_objective(
        self,
        experiment_name: str,
        *,
        limit: int | None = None,
        offset: int = 0,
        exclude_failed: bool = False,
    ) -> list[TrialRecord]:
        """Trials best objective value first (ties: creation order), then the trials without
        a value in creation order; ``offset``/``limit`` page through them. With
        ``exclude_failed`` Failed trials are left out (else they rank by their value too)."""
        ranked = _ranked(self, experiment_name, exclude_failed=exclude_failed)
        end = None if limit is None else offset + limit
        return [trial for trial, _ in ranked[offset:end]]

    @abc.abstractmethod
    def update_trial(
        self,
        name: str,
        *,
        condition: TrialCondition | None = None,
        reason: str | None = None,
        message: str | None = None,
        start_time: dt.datetime | None = None,
        completion_time: dt.datetime | None = None,
        runner_handle: Mapping[str, Any] | None = None,
        observation: Mapping[str, Any] | None = None,
        early_stopping_rules: Sequence[Mapping[str, Any]] | None = None,
        expect_condition: Iterable[TrialCondition] | None = None,
    ) -> TrialRecord:
        """Update the given fields.

        With ``expect_condition``, the update applies only if the trial's current condition is
        one of them (compare-and-set), and the returned record shows the unchanged trial
        otherwise: a trial already EarlyStopped is not overwritten by a late Succeeded.
        """

    def update_trials(
        self,
        updates: Sequence[TrialUpdate],
        observations: Mapping[str, Sequence[Observation]] | None = None,
    ) -> list[TrialRecord]:
        """Apply several :meth:`update_trial` updates; returns the records in the same order.
        ``observations`` (trial name → rows) are appended as :meth:`add_observations` does,
        whether or not a compare-and-set of the updates applied (a trial's last reported rows
        go in with its outcome).

        SqlStore applies them in one transaction (all or none; a missing trial raises
        NotFoundError before anything changes), which is what the reconciler batches a wave of
        trials into; the default applies them one by one.
        """
        for trial_name, rows in (observations or {}).items():
            self.add_observations(trial_name, rows)
        return [self.update_trial(u.name, **u.fields()) for u in updates]

    def write_trials(
        self,
        created: Sequence[TrialRecord],
        updates: Sequence[TrialUpdate],
        observations: Mapping[str, Sequence[Observation]] | None = None,
    ) -> list[TrialRecord]:
        """:meth:`update_trials` (``updates``, ``observations``) and :meth:`create_trials`
        (``created``), in one transaction where the store can (SqlStore: all or none), so a
        controller stores the outcome of a trial that ended and the next trial at once;
        returns the records of ``updates``. The default makes the two calls."""
        records = self.update_trials(updates, observations) if updates or observations else []
        if created:
            self.create_trials(created)
        return records

    # -- observation logs -----------------------------------------------------------------------
    @abc.abstractmethod
    def add_observations(self, trial_name: str, observations: Sequence[Observation]) -> int:
        """Append observations in one transaction; returns how many were written."""

    @abc.abstractmethod
    def get_observations(
        self,
        trial_name: str,
        metric_name: str | None = None,
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
    ) -> list[Observation]:
        """Observations ordered by (time, id), filtered as Katib's GetObservationLog."""

    @abc.abstractmethod
    def observation_counts(self, trial_name: str) -> dict[str, int]:
        """Number of stored observations per metric: what a replaying collector skips."""

    @abc.abstractmethod
    def delete_observations(self, trial_name: str) -> None: ...

    # -- cheap aggregate reads (defaults built on the methods above; SqlStore does one query) ---
    def count_trials(self, experiment_name: str) -> dict[TrialCondition, int]:
        """Number of trials per current condition (absent conditions are omitted)."""
        counts: dict[TrialCondition, int] = {}
        for trial in self.list_trials(experiment_name):
            counts[trial.condition] = counts.get(trial.condition, 0) + 1
        return counts

    def get_observations_for_trials(
        self, trial_names: Iterable[str], metric_name: str | None = None
    ) -> dict[str, list[Observation]]:
        """:meth:`get_observations` for many trials at once; every name is a key."""
        return {name: self.get_observations(name, metric_name) for name in trial_names}

    @abc.abstractmethod
    def ping(self) -> None:
        """``SELECT 1``; raises StoreUnavailableError when the database is down."""

    @abc.abstractmethod
    def close(self) -> None: ...


def _ranked(
    store: Store, experiment_name: str, *, exclude_failed: bool
) -> list[tuple[TrialRecord, float | None]]:
    """The default ranking by objective value (SqlStore asks the database instead)."""
    from tunery.store.derived import ObjectiveRule

    rule = ObjectiveRule.from_spec(store.get_experiment(experiment_name).spec)
    ranked = [
        (trial, None if rule is None else rule.value(trial.observation))
        for trial in store.list_trials(experiment_name)
        if not (exclude_failed and trial.condition is TrialCondition.FAILED)
    ]
    sign = -1.0 if rule is not None and rule.maximize else 1.0
    ranked.sort(key=lambda item: (item[1] is None, 0.0 if item[1] is None else sign * item[1]))
    return ranked
