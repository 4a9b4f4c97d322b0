"""Fixtures of the collector tests: an in-memory store that can fail, objectives, helpers.

``memory_store`` is a faithful, thread-safe in-memory :class:`Store` (observation logs only;
the rest is not needed here) whose ``down`` flag makes every call raise
``StoreUnavailableError``: collectors must retry through an outage and lose nothing. Tests
that need a real database use the shared ``store`` / ``sqlite_store`` fixtures.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytest

from tunery.store.base import ExperimentRecord, Store, TrialRecord
from tunery.store.errors import StoreUnavailableError
from tunery.trials import Objective, ObjectiveType, Observation, TrialCondition


class MemoryStore(Store):
    """Observation logs in memory, ordered by (time, insertion), with failure injection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, list[tuple[int, Observation]]] = {}
        self._next_id = 0
        self.down = False
        self.add_calls: list[int] = []  # rows per add_observations call

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailableError("memory store is down (test)")

    def add_observations(self, trial_name: str, observations: Sequence[Observation]) -> int:
        with self._lock:
            self._check()
            rows = self._rows.setdefault(trial_name, [])
            for obs in observations:
                self._next_id += 1
                rows.append((self._next_id, obs))
            self.add_calls.append(len(observations))
            return len(observations)

    def get_observations(
        self,
        trial_name: str,
        metric_name: str | None = None,
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
    ) -> list[Observation]:
        with self._lock:
            self._check()
            rows = sorted(self._rows.get(trial_name, []), key=lambda r: (r[1].time, r[0]))
            return [
                o
                for _, o in rows
                if (not metric_name or o.metric_name == metric_name)
                and (start_time is None or o.time >= start_time)
                and (end_time is None or o.time <= end_time)
            ]

    def observation_counts(self, trial_name: str) -> dict[str, int]:
        with self._lock:
            self._check()
            counts: dict[str, int] = {}
            for _, o in self._rows.get(trial_name, []):
                counts[o.metric_name] = counts.get(o.metric_name, 0) + 1
            return counts

    def delete_observations(self, trial_name: str) -> None:
        with self._lock:
            self._check()
            self._rows.pop(trial_name, None)

    def ping(self) -> None:
        self._check()

    def close(self) -> None:
        pass

    # Not used by the collector package.
    def create_experiment(self, name: str, spec: Mapping[str, Any]) -> ExperimentRecord:
        raise NotImplementedError

    def get_experiment(self, name: str) -> ExperimentRecord:
        raise NotImplementedError

    def list_experiments(self) -> list[ExperimentRecord]:
        raise NotImplementedError

    def update_experiment(self, name: str, **kwargs: Any) -> ExperimentRecord:
        raise NotImplementedError

    def delete_experiment(self, name: str) -> None:
        raise NotImplementedError

    def create_trial(self, trial: TrialRecord) -> TrialRecord:
        raise NotImplementedError

    def get_trial(self, name: str) -> TrialRecord:
        raise NotImplementedError

    def list_trials(
        self, experiment_name: str, conditions: Iterable[TrialCondition] | None = None
    ) -> list[TrialRecord]:
        raise NotImplementedError

    def update_trial(self, name: str, **kwargs: Any) -> TrialRecord:
        raise NotImplementedError


@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def minimize_loss() -> Objective:
    return Objective(ObjectiveType.MINIMIZE, "loss", None, ("accuracy",))


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> float:
    """Poll ``predicate`` every 5 ms; returns the seconds it took, fails after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.005)
    return time.monotonic() - start


@pytest.fixture
def until() -> Callable[..., float]:
    return wait_until
