"""RetryingStore: waits out an outage, gives up past the limit, never writes anything twice.

The inner store is a real SQLite store behind a proxy that fails on demand: before the call
("down"), or after it ran ("lost answer": the database committed, the connection broke
before it said so). Time is a fake clock advanced by the fake sleep, so no test waits.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import pytest

from tunery.retry import RetryPolicy
from tunery.store.base import Store, TrialRecord
from tunery.store.errors import AlreadyExistsError, NotFoundError, StoreUnavailableError
from tunery.store.retrying import RetryingStore
from tunery.trials import Observation

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Flaky:
    """Forwards to ``inner``; ``fail_before`` calls fail before running, ``lose_answers``
    calls run and then fail."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.fail_before = 0
        self.lose_answers = 0
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.inner, name)
        if not callable(method):
            return method  # url

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self.fail_before:
                self.fail_before -= 1
                raise StoreUnavailableError("connection refused (test)")
            result = method(*args, **kwargs)
            if self.lose_answers:
                self.lose_answers -= 1
                raise StoreUnavailableError("server closed the connection (test)")
            return result

        return call


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def rig(sqlite_store: Store) -> tuple[RetryingStore, Flaky, FakeTime]:
    flaky = Flaky(sqlite_store)
    clock = FakeTime()
    policy = RetryPolicy(initial_delay=0.5, max_delay=2.0, limit=10.0)
    retrying = RetryingStore(flaky, policy, sleep=clock.sleep, clock=lambda: clock.now)  # type: ignore[arg-type]
    retrying.create_experiment("exp", {"spec": {}})
    return retrying, flaky, clock


def trial(name: str = "exp-t1") -> TrialRecord:
    return TrialRecord(name=name, experiment_name="exp", assignment={"x": "1"}, created_at=T0)


def test_an_outage_is_waited_out_with_backoff_and_logged(rig, caplog) -> None:
    store, flaky, clock = rig
    flaky.fail_before = 5
    with caplog.at_level(logging.DEBUG, "tunery.store.retrying"):
        assert store.get_experiment("exp").name == "exp"
    assert clock.sleeps == [0.5, 1.0, 2.0, 2.0, 2.0]
    waits = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(waits) == 5
    assert "database sqlite:///" in waits[0].getMessage()
    assert "giving up at" in waits[0].getMessage()
    # the first wait is a warning, then at most one per 30 s (the 5 waits took 7.5 s)
    assert [r.levelno for r in waits] == [logging.WARNING] + [logging.DEBUG] * 4
    assert "available again" in caplog.records[-1].getMessage()


def test_past_the_limit_the_error_reaches_the_caller(rig) -> None:
    store, flaky, clock = rig
    flaky.fail_before = 1000
    with pytest.raises(StoreUnavailableError, match="outage limit of 10 s"):
        store.list_trials("exp")
    assert clock.now == pytest.approx(10.0)  # the last try is at the limit, not after


def test_the_outage_is_shared_a_later_call_does_not_wait_a_whole_limit_more(rig) -> None:
    store, flaky, clock = rig
    flaky.fail_before = 1000
    with pytest.raises(StoreUnavailableError):
        store.get_trial("exp-t1")
    flaky.fail_before = 1000
    with pytest.raises(StoreUnavailableError):
        store.get_trial("exp-t1")
    assert clock.now == pytest.approx(10.0)
    flaky.fail_before = 0
    with pytest.raises(NotFoundError):  # a real error passes at once, outage over
        store.get_trial("exp-t1")
    flaky.fail_before = 2
    assert store.list_trials("exp") == []  # a new outage starts a new limit


def test_a_trial_created_by_a_lost_answer_is_not_created_twice(rig) -> None:
    store, flaky, _ = rig
    flaky.lose_answers = 1
    created = store.create_trial(trial())
    assert created.name == "exp-t1"
    assert [t.name for t in store.list_trials("exp")] == ["exp-t1"]
    with pytest.raises(AlreadyExistsError):  # without a lost answer, a clash is an error
        store.create_trial(trial())


def test_a_batch_created_by_a_lost_answer_is_not_created_twice(rig) -> None:
    store, flaky, _ = rig
    flaky.lose_answers = 1
    assert store.create_trials([trial("exp-b1"), trial("exp-b2")]) == 2
    assert [t.name for t in store.list_trials("exp")] == ["exp-b1", "exp-b2"]
    with pytest.raises(AlreadyExistsError):  # a clash with other trials stays an error
        store.create_trials([trial("exp-b3"), trial("exp-b2")])
    other = TrialRecord(name="exp-b4", experiment_name="exp", assignment={"x": "2"})
    store.create_trial(other)
    flaky.fail_before = 1  # retried after an outage, the name is found taken by another trial
    with pytest.raises(AlreadyExistsError):
        store.create_trials([trial("exp-b4")])


def test_a_batch_update_whose_answer_was_lost_is_applied_once(rig) -> None:
    from tunery.store.base import TrialUpdate
    from tunery.trials import TrialCondition

    store, flaky, _ = rig
    store.create_trial(trial())
    flaky.lose_answers = 1
    running = TrialCondition.RUNNING
    (record,) = store.update_trials(
        [TrialUpdate("exp-t1", condition=running, expect_condition=(TrialCondition.CREATED,))]
    )
    assert record.condition is running
    assert flaky.calls.count("update_trials") == 2


def test_observations_written_by_a_lost_answer_are_not_written_twice(rig) -> None:
    store, flaky, _ = rig
    batch = [
        Observation("loss", "0.5", step, T0 + dt.timedelta(seconds=step), 0.5) for step in range(3)
    ]
    store.add_observations("exp-t1", batch[:1])
    flaky.lose_answers = 1
    assert store.add_observations("exp-t1", batch) == 3
    flaky.fail_before = 1  # failed before the database saw it: written on the retry
    store.add_observations("exp-t1", [Observation("loss", "0.4", 3, T0, 0.4)])
    rows = store.get_observations("exp-t1", "loss")
    assert sorted((o.step, o.value) for o in rows) == [
        (0, "0.5"),
        (0, "0.5"),
        (1, "0.5"),
        (2, "0.5"),
        (3, "0.4"),
    ]


def test_ping_answers_now(rig) -> None:
    store, flaky, clock = rig
    flaky.fail_before = 1
    with pytest.raises(StoreUnavailableError):
        store.ping()
    assert clock.sleeps == []


def test_an_outcome_and_rows_whose_answer_was_lost_are_written_once(rig) -> None:
    """update_trials with observations (a trial's outcome and last rows, one transaction):
    the retry after a lost answer finds the rows stored and writes them no second time."""
    from tunery.store.base import TrialUpdate
    from tunery.trials import TrialCondition

    store, flaky, _ = rig
    store.create_trial(trial())
    store.update_trial("exp-t1", condition=TrialCondition.RUNNING)
    rows = [
        Observation("loss", "0.5", step, T0 + dt.timedelta(seconds=step), 0.5) for step in (0, 1)
    ]
    flaky.lose_answers = 1
    done = TrialCondition.SUCCEEDED
    (record,) = store.update_trials(
        [TrialUpdate("exp-t1", condition=done, expect_condition=(TrialCondition.RUNNING,))],
        {"exp-t1": rows},
    )
    assert record.condition is done
    assert store.get_observations("exp-t1") == rows
    assert flaky.calls.count("update_trials") == 2


def test_trials_written_at_once_by_a_lost_answer_are_written_once(rig) -> None:
    """write_trials (an outcome, its rows and the next trial): the retry after a lost answer
    finds the new trial stored, so the whole transaction landed: nothing is written twice."""
    from tunery.store.base import TrialUpdate
    from tunery.trials import TrialCondition

    store, flaky, _ = rig
    store.create_trial(trial())
    store.update_trial("exp-t1", condition=TrialCondition.RUNNING)
    rows = [Observation("loss", "0.5", 0, T0, 0.5)]
    flaky.lose_answers = 1
    done = TrialCondition.SUCCEEDED
    (record,) = store.write_trials(
        [trial("exp-t2")],
        [TrialUpdate("exp-t1", condition=done, expect_condition=(TrialCondition.RUNNING,))],
        {"exp-t1": rows},
    )
    assert record.condition is done
    assert [t.name for t in store.list_trials("exp")] == ["exp-t1", "exp-t2"]
    assert store.get_observations("exp-t1") == rows
    flaky.fail_before = 1  # a retry after an outage before the call writes it once too
    store.write_trials([trial("exp-t3")], [], {"exp-t3": rows})
    assert [t.name for t in store.list_trials("exp")] == ["exp-t1", "exp-t2", "exp-t3"]
    assert store.get_observations("exp-t3") == rows
