"""What a reconcile step writes, and what it leaves behind (issue 17, per-trial overhead).

A new trial is stored Running, with its prepared handle, in the transaction that creates it; a
started trial's runner handle and the experiment status may wait (``write_behind``) for the
next transaction or :meth:`Reconciler.flush`, and nothing of it is lost: the end of the
experiment writes the final status, and every trial ends with its runner's handle. Also: the
local collection loop keeps one thread for trials that end and start one after another.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest

from controller.clients import InProcessSuggestionClient
from controller.collecting import CollectLoop, LogWatcher
from controller.gpus import GpuAllocator
from controller.local import submit
from controller.reconcile import ReconcileError, Reconciler
from controller.runners.base import TrialLaunch
from controller.runners.fake import FakeOutcome, FakeRunner
from tests.controller.test_reconcile import Scripted, experiment
from tunery.store.base import Store
from tunery.trials import TrialCondition


class CountingStore:
    """Passes every call to ``inner`` and counts the calls by method name."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attribute(*args, **kwargs)

        return counted


def quick(launch: TrialLaunch) -> FakeOutcome:
    return FakeOutcome(["loss=1"])


def reconciler_for(store: Any, tmp_path: Path, doc: dict[str, Any], **kwargs: Any) -> Reconciler:
    submit(store, doc, tmp_path)
    return Reconciler(
        store,
        "exp",
        runner=FakeRunner(kwargs.pop("handler", quick)),
        suggestions=InProcessSuggestionClient(Scripted()),
        watcher_factory=LogWatcher.factory(store, doc),
        allocator=GpuAllocator([]),
        base_dir=tmp_path,
        logs_dir=tmp_path / "logs",
        **kwargs,
    )


def test_a_trial_costs_one_creation_and_one_update(sqlite_store: Store, tmp_path: Path) -> None:
    """At parallel 1, each trial is one create (stored Running) and one update (its outcome,
    carrying its handle); the status waits, so it is written when its condition changes and
    at the end only."""
    store = CountingStore(sqlite_store)
    doc = experiment(parallelTrialCount=1, maxTrialCount=12)
    reconciler = reconciler_for(store, tmp_path, doc, write_behind=3600.0)
    store.calls.clear()
    for _ in range(100):
        if reconciler.step().done:
            break
    else:
        raise AssertionError("experiment did not complete")
    reconciler.close()
    assert store.calls["create_trials"] == 12
    assert store.calls["update_trials"] == 12
    assert store.calls["update_experiment"] <= 3  # Running, then Succeeded
    status = dict(sqlite_store.get_experiment("exp").status)
    assert status["trials"] == status["trialsSucceeded"] == 12
    assert status["conditions"][-1]["reason"] == "ExperimentMaxTrialsReached"
    for trial in sqlite_store.list_trials("exp"):
        assert trial.condition is TrialCondition.SUCCEEDED
        assert trial.runner_handle["trial"] == trial.name  # the started job's, not the prepared


def test_handles_and_status_left_behind_until_flushed(sqlite_store: Store, tmp_path: Path) -> None:
    doc = experiment(parallelTrialCount=2, maxTrialCount=4)
    reconciler = reconciler_for(
        sqlite_store,
        tmp_path,
        doc,
        write_behind=3600.0,
        handler=lambda launch: FakeOutcome(["loss=1"], duration=3600),
    )
    reconciler.step()  # Created -> Running: the condition is written at once
    running = sqlite_store.list_trials("exp")
    assert [t.condition for t in running] == [TrialCondition.RUNNING] * 2
    # stored Running with the handle prepared before the start (it finds the job after a
    # crash); the runner's handle is held back
    assert all("trial" not in t.runner_handle and t.runner_handle for t in running)
    assert reconciler.flush() is not None  # pending, due in about an hour
    assert reconciler.flush(force=True) is None
    assert all(t.runner_handle["trial"] == t.name for t in sqlite_store.list_trials("exp"))
    assert reconciler.flush() is None  # nothing left
    reconciler.interrupt("stopped by the test")
    reconciler.close()
    status = dict(sqlite_store.get_experiment("exp").status)
    assert status["trialsKilled"] == 2 and status["trialsRunning"] == 0


def test_an_interrupt_writes_the_handles_left_behind(sqlite_store: Store, tmp_path: Path) -> None:
    doc = experiment(parallelTrialCount=2, maxTrialCount=4)
    reconciler = reconciler_for(
        sqlite_store,
        tmp_path,
        doc,
        write_behind=3600.0,
        handler=lambda launch: FakeOutcome(["loss=1"], duration=3600),
    )
    reconciler.step()
    reconciler.interrupt("stopped by the test")
    reconciler.close()
    trials = sqlite_store.list_trials("exp")
    assert [t.condition for t in trials] == [TrialCondition.KILLED] * 2
    assert all(t.runner_handle["trial"] == t.name for t in trials)


def test_without_write_behind_a_step_writes_everything(
    sqlite_store: Store, tmp_path: Path
) -> None:
    doc = experiment(parallelTrialCount=2, maxTrialCount=4)
    reconciler = reconciler_for(
        sqlite_store,
        tmp_path,
        doc,
        handler=lambda launch: FakeOutcome(["loss=1"], duration=3600),
    )
    reconciler.step()
    assert reconciler.flush() is None
    trials = sqlite_store.list_trials("exp")
    assert all(t.runner_handle["trial"] == t.name for t in trials)
    assert dict(sqlite_store.get_experiment("exp").status)["trialsRunning"] == 2
    reconciler.interrupt("stopped by the test")
    reconciler.close()


class _Watcher:
    trial_name = "t"

    def __init__(self) -> None:
        self.threads: set[int] = set()

    def advance(self) -> None:
        self.threads.add(threading.get_ident())


def test_the_collection_loop_keeps_its_thread_between_trials() -> None:
    loop = CollectLoop(poll_interval=0.001, linger=5.0)
    first, second = _Watcher(), _Watcher()
    loop.add(first)  # type: ignore[arg-type]
    while not first.threads:
        time.sleep(0.001)
    loop.remove(first)  # type: ignore[arg-type]
    time.sleep(0.05)  # no watcher for a moment: the thread waits for the next one
    loop.add(second)  # type: ignore[arg-type]
    while not second.threads:
        time.sleep(0.001)
    loop.remove(second)  # type: ignore[arg-type]
    assert first.threads == second.threads


def test_the_collection_loop_thread_ends_when_idle() -> None:
    loop = CollectLoop(poll_interval=0.001, linger=0.01)
    watcher = _Watcher()
    loop.add(watcher)  # type: ignore[arg-type]
    while not watcher.threads:
        time.sleep(0.001)
    loop.remove(watcher)  # type: ignore[arg-type]
    deadline = time.monotonic() + 5
    while any(t.ident in watcher.threads for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the collection thread did not end"
        time.sleep(0.01)


class FailsOnSecondRequest(Scripted):
    def GetSuggestions(self, request, context):
        if self.requests:
            context.abort(grpc.StatusCode.INTERNAL, "the algorithm broke")
        return super().GetSuggestions(request, context)


def test_a_failing_step_stores_the_outcomes_it_took_in(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """A step takes an ended job's outcome into its view before it asks for the next trial
    and stores it with its next write; when the suggestion service fails in between, the
    outcome is stored before the experiment is marked Failed."""
    doc = experiment(parallelTrialCount=1, maxTrialCount=4)
    submit(sqlite_store, doc, tmp_path)
    reconciler = Reconciler(
        sqlite_store,
        "exp",
        runner=FakeRunner(quick),
        suggestions=InProcessSuggestionClient(FailsOnSecondRequest()),
        watcher_factory=LogWatcher.factory(sqlite_store, doc),
        allocator=GpuAllocator([]),
        base_dir=tmp_path,
        logs_dir=tmp_path / "logs",
        write_behind=3600.0,
    )
    reconciler.step()  # starts the first trial
    with pytest.raises(ReconcileError, match="the algorithm broke"):
        reconciler.step()  # it ended; asking for the second fails
    reconciler.close()
    (trial,) = sqlite_store.list_trials("exp")
    assert trial.condition is TrialCondition.SUCCEEDED
    assert trial.runner_handle["trial"] == trial.name
    status = dict(sqlite_store.get_experiment("exp").status)
    assert status["conditions"][-1]["type"] == "Failed"
    assert status["trialsSucceeded"] == 1


class RowCountingStore(CountingStore):
    """Also counts the observation rows written with trial updates (``update_trials`` /
    ``write_trials``) and by ``add_observations``."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.rows_with_outcomes = 0
        self.rows_alone = 0

    def __getattr__(self, name: str) -> Any:
        method = super().__getattr__(name)
        if name not in ("update_trials", "write_trials", "add_observations"):
            return method

        def counted(*args: Any) -> Any:
            if name == "add_observations":
                self.rows_alone += len(args[1])
            elif args[-1] and isinstance(args[-1], dict):
                self.rows_with_outcomes += sum(len(rows) for rows in args[-1].values())
            return method(*args)

        return counted


def holding_reconciler(
    store: Any, tmp_path: Path, doc: dict[str, Any], handler: Any
) -> Reconciler:
    submit(store, doc, tmp_path)
    return Reconciler(
        store,
        "exp",
        runner=FakeRunner(handler),
        suggestions=InProcessSuggestionClient(Scripted()),
        watcher_factory=LogWatcher.factory(store, doc, hold_last_rows=True),
        allocator=GpuAllocator([]),
        base_dir=tmp_path,
        logs_dir=tmp_path / "logs",
        write_behind=3600.0,
    )


def test_a_trials_last_rows_are_stored_with_its_outcome(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """The local controller's watchers hold a trial's last rows for the outcome's transaction,
    and summarise a trial they watched from its start without reading its rows back; every
    row is stored once."""
    store = RowCountingStore(sqlite_store)
    doc = experiment(parallelTrialCount=1, maxTrialCount=6)
    reconciler = holding_reconciler(
        store, tmp_path, doc, lambda launch: FakeOutcome(["loss=1", "loss=0.5"])
    )
    for _ in range(100):
        if reconciler.step().done:
            break
    else:
        raise AssertionError("experiment did not complete")
    reconciler.close()
    assert store.calls["get_observations"] == 0
    assert store.rows_with_outcomes + store.rows_alone == 12
    assert store.rows_with_outcomes >= 2  # the collection loop waits before a first write
    for trial in sqlite_store.list_trials("exp"):
        assert trial.condition is TrialCondition.SUCCEEDED
        assert [o.value for o in sqlite_store.get_observations(trial.name)] == ["1", "0.5"]
        (loss,) = trial.observation["metrics"]
        assert (loss["min"], loss["max"], loss["latest"]) == ("0.5", "1", "0.5")


def test_while_a_trial_runs_outcomes_are_stored_with_the_next_creation(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """Another trial still running: the ended trial's outcome and rows go into the transaction
    that creates the next trial (write_trials), not one of their own."""
    store = RowCountingStore(sqlite_store)
    doc = experiment(parallelTrialCount=2, maxTrialCount=6)
    launched: list[str] = []

    def handler(launch: TrialLaunch) -> FakeOutcome:
        launched.append(launch.trial_name)
        return FakeOutcome(["loss=1"], duration=3600 if len(launched) == 1 else 0)

    reconciler = holding_reconciler(store, tmp_path, doc, handler)
    for _ in range(200):
        reconciler.step()
        trials = sqlite_store.list_trials("exp")
        if sum(t.condition is TrialCondition.SUCCEEDED for t in trials) == 5:
            break
    else:
        raise AssertionError("the quick trials did not complete")
    assert store.calls["write_trials"] >= 3
    reconciler.interrupt("stopped by the test")
    reconciler.close()
    trials = sqlite_store.list_trials("exp")
    assert [t.name for t in trials if t.condition is TrialCondition.KILLED] == launched[:1]
    for trial in trials[1:]:
        assert [o.value for o in sqlite_store.get_observations(trial.name)] == ["1"]
