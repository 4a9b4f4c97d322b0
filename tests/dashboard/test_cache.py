"""Snapshots shared by the dashboard's requests: re-read only when they may be stale."""

from __future__ import annotations

import threading
import time

from tests.dashboard.conftest import NAME, Run
from tunery.dashboard.cache import SnapshotCache
from tunery.store import open_store
from tunery.store.base import TrialRecord
from tunery.visualization import data


class CountingStore:
    """Wraps a store, counting list_trials calls."""

    def __init__(self, store: object) -> None:
        self.store = store
        self.listed = 0

    def list_trials(self, name: str, conditions: object = None) -> object:
        self.listed += 1
        return self.store.list_trials(name, conditions)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


def test_a_finished_experiment_is_read_once_until_it_changes(run_copy: Run) -> None:
    store = open_store(run_copy.db_url)
    try:
        counting = CountingStore(store)
        cache = SnapshotCache(counting, max_age=0.0)  # type: ignore[arg-type]
        first = cache.get(NAME)
        assert cache.get(NAME) is first and counting.listed == 1
        store.update_experiment(NAME, status={**first.record.status, "note": "changed"})
        assert cache.get(NAME) is not first and counting.listed == 2
    finally:
        store.close()


def test_a_running_experiment_is_re_read_after_max_age(run_copy: Run) -> None:
    store = open_store(run_copy.db_url)
    try:
        status = dict(store.get_experiment(NAME).status)
        status["conditions"] = [{**status["conditions"][0]}]  # back to Created: not completed
        store.update_experiment(NAME, status=status)
        cache = SnapshotCache(store, max_age=0.2)
        first = cache.get(NAME)
        assert not first.completed
        trial = store.list_trials(NAME)[0]
        store.create_trial(TrialRecord("late-trial", NAME, dict(trial.assignment)))
        assert cache.get(NAME) is first  # within max_age
        time.sleep(0.25)
        again = cache.get(NAME)
        assert len(again.trials) == len(first.trials) + 1
    finally:
        store.close()


def test_a_plot_asked_for_by_two_threads_at_once_is_computed_once(run_copy: Run) -> None:
    store = open_store(run_copy.db_url)
    try:
        snapshot = data.load_snapshot(store, NAME)
    finally:
        store.close()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        started.set()
        release.wait(5)
        return "figure"

    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(snapshot.memo("k", compute)))
    first.start()
    assert started.wait(5)
    second = threading.Thread(target=lambda: results.append(snapshot.memo("k", compute)))
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the first thread's result, not computing its own
    release.set()
    first.join(5)
    second.join(5)
    assert results == ["figure", "figure"] and calls == [1]
