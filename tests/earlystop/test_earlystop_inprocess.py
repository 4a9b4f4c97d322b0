"""The in-process form: StopChecks per running trial, shared policy, store-backed source."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from earlystop.base import Comparison, StopRule
from earlystop.inprocess import InProcessEarlyStopping, StoreCompletedSource, make_stop_check
from earlystop.medianstop import MedianStop, MedianStopPolicy, MedianStopSettings
from tunery.store.base import Store, TrialRecord
from tunery.store.errors import NotFoundError
from tunery.trials import Objective, ObjectiveType, Observation, TrialCondition

MIN = Objective(ObjectiveType.MINIMIZE, "loss")


def curve(values: Sequence[float | str], metric: str = "loss") -> list[Observation]:
    return [Observation.of(metric, v, step) for step, v in enumerate(values)]


class CountingMedianStop(MedianStop):
    """MedianStop that counts how often it prepares (to check re-preparation)."""

    prepared = 0

    def prepare(
        self, objective: Objective, completed: Iterable[Sequence[Observation]]
    ) -> MedianStopPolicy:
        self.prepared += 1
        return super().prepare(objective, completed)


def completed_trials(n: int) -> dict[str, list[Observation]]:
    # medians at step 2: average of the first two reports of trial i is i + 1
    return {f"t{i}": curve([i + 1, i + 1, i + 1]) for i in range(n)}


def test_stop_check_follows_the_rule_as_observations_arrive() -> None:
    completed = completed_trials(3)  # medians: step 2 -> 2
    check = make_stop_check(MedianStop(MedianStopSettings(3, 2)), MIN, lambda: completed)
    obs = curve([5, 2.5, 1.5])
    assert [check(obs[: n + 1]).stop for n in range(3)] == [False, True, False]


def test_policy_is_shared_and_prepared_once_per_completed_set() -> None:
    stopper = CountingMedianStop(MedianStopSettings(3, 2))
    completed = completed_trials(2)
    stopping = InProcessEarlyStopping(stopper, MIN, lambda: completed)
    first, second = stopping.stop_check(), stopping.stop_check()
    obs = curve([9, 9, 9])
    for n in range(1, 4):
        assert not first(obs[:n]).stop  # only 2 completed trials: undecided
        assert not second(obs[:n]).stop
    assert stopper.prepared == 1
    completed = {**completed, "t2": curve([3, 3, 3])}  # a third trial completes
    assert first(obs).stop
    assert second(obs).stop
    assert stopper.prepared == 2
    assert stopping.rules() == [StopRule("loss", 2.0, Comparison.GREATER, 2)]
    assert stopper.prepared == 2


def test_check_is_incremental_and_rebuilds_on_a_replaced_list() -> None:
    completed = completed_trials(3)
    check = make_stop_check(MedianStop(MedianStopSettings(3, 2)), MIN, lambda: completed)
    assert not check(curve([1, 1, 1])).stop
    assert check(curve([9, 9])).stop  # a shorter list: the trial's reports were replaced
    assert not check(curve([1, 1])).stop  # same length, another first report: rebuilt
    assert check(curve([1, 1, 1, 5, 5, 9])) == check(curve([1, 1, 1, 5, 5, 9]))
    assert not check([]).stop


def test_mapping_grown_in_place_is_noticed() -> None:
    stopper = CountingMedianStop(MedianStopSettings(3, 2))
    completed = completed_trials(2)
    check = make_stop_check(stopper, MIN, lambda: completed)
    assert not check(curve([9, 9])).stop
    completed["t2"] = curve([3, 3, 3])
    assert check(curve([9, 9, 9])).stop
    assert stopper.prepared == 2


def test_checks_are_thread_safe() -> None:
    stopper = CountingMedianStop(MedianStopSettings(3, 2))
    completed = completed_trials(5)
    stopping = InProcessEarlyStopping(stopper, MIN, lambda: completed)
    results: list[bool] = []
    lock = threading.Lock()

    def run(value: float) -> None:
        check = stopping.stop_check()
        obs = curve([value] * 50)
        out = [check(obs[: n + 1]).stop for n in range(50)]
        with lock:
            results.append(out[2])

    threads = [threading.Thread(target=run, args=(v,)) for v in (1, 9, 1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, True, True]
    assert stopper.prepared == 1


class FakeStore:
    """The two Store methods StoreCompletedSource uses, with call counts."""

    def __init__(self) -> None:
        self.trials: dict[str, TrialCondition] = {}
        self.observations: dict[str, list[Observation]] = {}
        self.list_calls = 0
        self.read_calls = 0

    def list_trials(
        self, experiment_name: str, conditions: Iterable[TrialCondition] | None = None
    ) -> list[TrialRecord]:
        self.list_calls += 1
        wanted = set(conditions or TrialCondition)
        return [
            TrialRecord(name, experiment_name, {}, condition)
            for name, condition in self.trials.items()
            if condition in wanted
        ]

    def get_observations(self, trial_name: str, metric_name: str | None = None) -> Any:
        self.read_calls += 1
        if trial_name not in self.trials:
            raise NotFoundError(f"trial {trial_name} not found")
        return [o for o in self.observations[trial_name] if o.metric_name == metric_name]


def test_store_source_caches_trials_and_throttles_listing() -> None:
    store = FakeStore()
    now = [0.0]
    source = StoreCompletedSource(
        cast(Store, store), "exp", "loss", refresh_s=1.0, clock=lambda: now[0]
    )
    store.trials = {"a": TrialCondition.SUCCEEDED, "b": TrialCondition.RUNNING}
    store.observations = {"a": curve([1, 2]) + curve([0.5], "acc"), "b": curve([3])}
    first = source()
    assert dict(first) == {"a": tuple(curve([1, 2]))}
    assert source() is first and store.list_calls == 1  # throttled
    now[0] = 1.5
    assert source() is first and store.list_calls == 2  # same set: same snapshot
    store.trials["b"] = TrialCondition.SUCCEEDED
    now[0] = 3.0
    second = source()
    assert set(second) == {"a", "b"}
    assert store.read_calls == 2  # "a" was not read again
    assert isinstance(second, Mapping)


def test_store_source_feeds_a_shared_policy() -> None:
    store = FakeStore()
    store.trials = {f"t{i}": TrialCondition.SUCCEEDED for i in range(3)}
    store.observations = completed_trials(3)
    stopper = CountingMedianStop(MedianStopSettings(3, 2))
    source = StoreCompletedSource(cast(Store, store), "exp", "loss", refresh_s=0.0)
    check = InProcessEarlyStopping(stopper, MIN, source).stop_check()
    assert check(curve([9, 9])).stop
    assert not check(curve([1, 1, 1])).stop
    assert stopper.prepared == 1
