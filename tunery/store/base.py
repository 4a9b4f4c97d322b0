"""The Store interface and the records it stores: experiments, trials, observation logs.

Kernel module, free of SQLAlchemy: every package codes against :class:`Store`; only
``tunery.store.sql`` implements it (SQLite, PostgreSQL, MySQL/MariaDB). Each method is one
transaction. Records are frozen values; updates go through the store.

Error tree (all in ``tunery.store.errors``)::

    StoreError(Exception)
     ├── NotFoundError(StoreError, KeyError)        experiment/trial does not exist
     ├── AlreadyExistsError(StoreError, ValueError) name taken
     └── StoreUnavailableError(StoreError)          cannot connect / operational error (retryable)
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunery.trials import Observation, TrialCondition


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


class Store(abc.ABC):
    """Narrow persistence API. Thread-safe; every method is one transaction.

    Raises:
        NotFoundError: the named experiment or trial does not exist.
        AlreadyExistsError: creating a name that exists.
        StoreUnavailableError: the database cannot be reached (retryable).
    """

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

    @abc.abstractmethod
    def get_trial(self, name: str) -> TrialRecord: ...

    @abc.abstractmethod
    def list_trials(
        self, experiment_name: str, conditions: Iterable[TrialCondition] | None = None
    ) -> list[TrialRecord]:
        """Trials of an experiment, in creation order, optionally filtered by condition."""

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
