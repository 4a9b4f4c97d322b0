"""Concurrent use of one database: processes writing observations, racing compare-and-set."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import queue
import threading
import traceback
from typing import Any

import pytest

from tunery.store import Store, TrialRecord, open_store
from tunery.trials import Observation, TrialCondition

COUNT = 400
BATCH = 25
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def append_observations(
    url: str, tag: str, trial_names: list[str], count: int, batch: int, barrier: Any, results: Any
) -> None:
    """Open the store together with the other workers (so a fresh database is migrated
    concurrently), then append ``count`` observations of metric ``tag`` to every trial in
    batches, interleaving trials. Puts ``(tag, None)`` or ``(tag, traceback)`` on results."""
    try:
        barrier.wait(timeout=60)
        store = open_store(url)
        try:
            barrier.wait(timeout=60)
            for start in range(0, count, batch):
                for name in trial_names:
                    rows = [
                        Observation(tag, f"{tag}-{i}", i, T0 + dt.timedelta(microseconds=i))
                        for i in range(start, min(start + batch, count))
                    ]
                    assert store.add_observations(name, rows) == len(rows)
        finally:
            store.close()
        results.put((tag, None))
    except BaseException:
        results.put((tag, traceback.format_exc()))


def test_two_processes_append_without_losing_rows(db_url: str) -> None:
    """Two processes open a fresh database at once (racing its migration), then append to a
    shared trial and to one trial each; every row arrives exactly once, in order."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    plan = {"a": ["shared", "only-a"], "b": ["shared", "only-b"]}
    workers = [
        context.Process(
            target=append_observations,
            args=(db_url, tag, names, COUNT, BATCH, barrier, results),
        )
        for tag, names in plan.items()
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = dict(results.get(timeout=120) for _ in workers)
    except queue.Empty:
        pytest.fail("a worker process did not report within 120 s")
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    assert outcomes == {"a": None, "b": None}, "\n".join(filter(None, outcomes.values()))

    store = open_store(db_url)
    try:
        expected = [f"{tag}-{i}" for tag in "ab" for i in range(COUNT)]
        shared = store.get_observations("shared")
        assert sorted(o.value for o in shared) == sorted(expected)
        for tag in "ab":
            mine = [o for o in shared if o.metric_name == tag]
            assert [o.step for o in mine] == list(range(COUNT))  # ordered by (time, id)
            own = store.get_observations(f"only-{tag}")
            assert [o.value for o in own] == [f"{tag}-{i}" for i in range(COUNT)]
        assert store.observation_counts("shared") == {"a": COUNT, "b": COUNT}
    finally:
        store.close()


def test_compare_and_set_has_exactly_one_winner(store: Store) -> None:
    store.create_experiment("exp", {})
    store.create_trial(
        TrialRecord("t", "exp", {"x": "1"}, condition=TrialCondition.RUNNING, message="running")
    )
    threads = 8
    barrier = threading.Barrier(threads)
    applied: list[int] = []
    errors: list[BaseException] = []

    def finish(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            final = TrialCondition.EARLY_STOPPED if i % 2 else TrialCondition.SUCCEEDED
            record = store.update_trial(
                "t",
                condition=final,
                message=f"thread {i}",
                expect_condition=[TrialCondition.RUNNING],
            )
            if record.message == f"thread {i}":
                applied.append(i)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=finish, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    assert errors == []
    assert len(applied) == 1
    winner = store.get_trial("t")
    assert winner.message == f"thread {applied[0]}"
    assert winner.condition is (
        TrialCondition.EARLY_STOPPED if applied[0] % 2 else TrialCondition.SUCCEEDED
    )
