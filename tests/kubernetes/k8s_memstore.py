"""An in-memory :class:`tunery.store.Store` for the operator tests while no SQL store is at hand.

Used only when ``tunery.store.open_store`` is unavailable (see ``conftest.py``); it keeps the
contract the reconciler relies on: one lock per call (a transaction), compare-and-set through
``expect_condition``, observations ordered by (time, insertion), and experiments, trials and
observations keyed by (namespace, name), with :meth:`MemoryStore.in_namespace` views sharing
one set of tables.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tunery.store.base import (
    DEFAULT_NAMESPACE,
    ExperimentRecord,
    Store,
    TrialRecord,
    check_namespace,
    utcnow,
)
from tunery.store.errors import AlreadyExistsError, NotFoundError
from tunery.trials import Observation, TrialCondition


class _Tables:
    """Every namespace's rows, keyed by (namespace, name); shared by a store and its views."""

    def __init__(self) -> None:
        self.experiments: dict[tuple[str, str], ExperimentRecord] = {}
        self.trials: dict[tuple[str, str], TrialRecord] = {}
        self.observations: dict[tuple[str, str], list[Observation]] = {}
        self.lock = threading.Lock()


class _Namespaced(dict):  # type: ignore[type-arg]
    """One namespace's slice of a table of :class:`_Tables`, as a dict keyed by name."""

    def __init__(self, table: dict[tuple[str, str], Any], namespace: str) -> None:
        super().__init__()
        self.table = table
        self.namespace = namespace

    def __contains__(self, name: object) -> bool:
        return (self.namespace, name) in self.table

    def __getitem__(self, name: str) -> Any:
        return self.table[(self.namespace, name)]

    def __setitem__(self, name: str, value: Any) -> None:
        self.table[(self.namespace, name)] = value

    def __delitem__(self, name: str) -> None:
        del self.table[(self.namespace, name)]

    def get(self, name: str, default: Any = None) -> Any:
        return self.table.get((self.namespace, name), default)

    def pop(self, name: str, default: Any = None) -> Any:
        return self.table.pop((self.namespace, name), default)

    def setdefault(self, name: str, default: Any) -> Any:
        return self.table.setdefault((self.namespace, name), default)

    def values(self) -> list[Any]:  # type: ignore[override]
        return [v for (ns, _), v in self.table.items() if ns == self.namespace]


class MemoryStore(Store):
    def __init__(self, namespace: str = DEFAULT_NAMESPACE, tables: _Tables | None = None) -> None:
        check_namespace(namespace)
        self._namespace = namespace
        self._tables = tables or _Tables()
        self._experiments = _Namespaced(self._tables.experiments, namespace)
        self._trials = _Namespaced(self._tables.trials, namespace)
        self._observations = _Namespaced(self._tables.observations, namespace)
        self._lock = self._tables.lock

    @property
    def namespace(self) -> str:
        return self._namespace

    def in_namespace(self, namespace: str) -> MemoryStore:
        if namespace == self._namespace:
            return self
        return MemoryStore(namespace, self._tables)

    def list_namespaces(self) -> list[str]:
        with self._lock:
            return sorted({ns for ns, _ in self._tables.experiments})

    def trial_namespaces(self, trial_name: str) -> list[str]:
        with self._lock:
            return sorted(ns for ns, name in self._tables.trials if name == trial_name)

    def create_experiment(self, name: str, spec: Mapping[str, Any]) -> ExperimentRecord:
        with self._lock:
            if name in self._experiments:
                raise AlreadyExistsError(f"experiment {name!r} exists")
            record = ExperimentRecord(name=name, spec=dict(spec))
            self._experiments[name] = record
            return record

    def get_experiment(self, name: str) -> ExperimentRecord:
        with self._lock:
            if name not in self._experiments:
                raise NotFoundError(f"experiment {name!r} not found")
            return self._experiments[name]

    def list_experiments(self) -> list[ExperimentRecord]:
        with self._lock:
            return sorted(self._experiments.values(), key=lambda e: e.created_at)

    def update_experiment(
        self,
        name: str,
        *,
        spec: Mapping[str, Any] | None = None,
        status: Mapping[str, Any] | None = None,
    ) -> ExperimentRecord:
        with self._lock:
            if name not in self._experiments:
                raise NotFoundError(f"experiment {name!r} not found")
            record = self._experiments[name]
            changes: dict[str, Any] = {"updated_at": utcnow()}
            if spec is not None:
                changes["spec"] = dict(spec)
            if status is not None:
                changes["status"] = dict(status)
            record = dataclasses.replace(record, **changes)
            self._experiments[name] = record
            return record

    def delete_experiment(self, name: str) -> None:
        with self._lock:
            if self._experiments.pop(name, None) is None:
                raise NotFoundError(f"experiment {name!r} not found")
            for trial in [t for t in self._trials.values() if t.experiment_name == name]:
                del self._trials[trial.name]
                self._observations.pop(trial.name, None)

    def create_trial(self, trial: TrialRecord) -> TrialRecord:
        with self._lock:
            if trial.name in self._trials:
                raise AlreadyExistsError(f"trial {trial.name!r} exists")
            if trial.experiment_name not in self._experiments:
                raise NotFoundError(f"experiment {trial.experiment_name!r} not found")
            self._trials[trial.name] = trial
            return trial

    def get_trial(self, name: str) -> TrialRecord:
        with self._lock:
            if name not in self._trials:
                raise NotFoundError(f"trial {name!r} not found")
            return self._trials[name]

    def list_trials(
        self, experiment_name: str, conditions: Iterable[TrialCondition] | None = None
    ) -> list[TrialRecord]:
        wanted = None if conditions is None else set(conditions)
        with self._lock:
            return [
                t
                for t in self._trials.values()
                if t.experiment_name == experiment_name
                and (wanted is None or t.condition in wanted)
            ]

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
        with self._lock:
            if name not in self._trials:
                raise NotFoundError(f"trial {name!r} not found")
            trial = self._trials[name]
            if expect_condition is not None and trial.condition not in set(expect_condition):
                return trial
            changes = {
                k: v
                for k, v in {
                    "condition": condition,
                    "reason": reason,
                    "message": message,
                    "start_time": start_time,
                    "completion_time": completion_time,
                    "runner_handle": None if runner_handle is None else dict(runner_handle),
                    "observation": None if observation is None else dict(observation),
                    "early_stopping_rules": None
                    if early_stopping_rules is None
                    else tuple(early_stopping_rules),
                }.items()
                if v is not None
            }
            trial = dataclasses.replace(trial, **changes)
            self._trials[name] = trial
            return trial

    def add_observations(self, trial_name: str, observations: Sequence[Observation]) -> int:
        with self._lock:
            self._observations.setdefault(trial_name, []).extend(observations)
            return len(observations)

    def get_observations(
        self,
        trial_name: str,
        metric_name: str | None = None,
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
    ) -> list[Observation]:
        with self._lock:
            rows = list(self._observations.get(trial_name, []))
        rows = [
            o
            for o in rows
            if (metric_name is None or o.metric_name == metric_name)
            and (start_time is None or o.time >= start_time)
            and (end_time is None or o.time <= end_time)
        ]
        return sorted(rows, key=lambda o: o.time)  # stable: insertion order breaks ties

    def observation_counts(self, trial_name: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for obs in self.get_observations(trial_name):
            counts[obs.metric_name] = counts.get(obs.metric_name, 0) + 1
        return counts

    def delete_observations(self, trial_name: str) -> None:
        with self._lock:
            self._observations.pop(trial_name, None)

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass
