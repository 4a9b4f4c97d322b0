"""Concurrent use of one database: processes writing observations, racing compare-and-set."""

from __future__ import annotations

import multiprocessing
import queue
import runpy
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tunery.store import Store, TrialRecord, open_store
from tunery.trials import TrialCondition

COUNT = 400
BATCH = 25
WORKER = Path(__file__).with_name("store_worker.py")


def _collect(results: Any, workers: list[Any], timeout_s: float) -> dict[str, str | None]:
    """Every worker's report; fails fast if one dies without reporting."""
    deadline = time.monotonic() + timeout_s
    outcomes: dict[str, str | None] = {}
    while len(outcomes) < len(workers):
        try:
            tag, error = results.get(timeout=0.5)
            outcomes[tag] = error
        except queue.Empty:
            dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if dead:
                pytest.fail(f"a worker process exited with status {dead[0]} without reporting")
            if time.monotonic() > deadline:
                pytest.fail(f"the worker processes did not report within {timeout_s} s")
    return outcomes


def test_two_processes_append_without_losing_rows(db_url: str) -> None:
    """Two processes open a fresh database at once (racing its migration), then append to a
    shared trial and to one trial each; every row arrives exactly once, in order."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    plan = {"a": ["shared", "only-a"], "b": ["shared", "only-b"]}
    workers = [
        context.Process(
            target=runpy.run_path,
            args=(str(WORKER),),
            kwargs={
                "run_name": "__tunery_store_worker__",
                "init_globals": {
                    "ARGS": {
                        "url": db_url,
                        "tag": tag,
                        "trial_names": names,
                        "count": COUNT,
                        "batch": BATCH,
                        "barrier": barrier,
                        "results": results,
                    }
                },
            },
        )
        for tag, names in plan.items()
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = _collect(results, workers, timeout_s=120)
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
