"""Store conformance suite: every backend (``store`` fixture) behaves the same."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from tunery.store import (
    AlreadyExistsError,
    NotFoundError,
    Store,
    StoreError,
    TrialRecord,
    TrialUpdate,
)
from tunery.trials import ZERO_TIME, Observation, TrialCondition

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=UTC)
SPEC = {
    "apiVersion": "kubeflow.org/v1beta1",
    "kind": "Experiment",
    "metadata": {"name": "exp"},
    "spec": {
        "objective": {"type": "minimize", "objectiveMetricName": "loss", "goal": 0.01},
        "parameters": [{"name": "lr", "feasibleSpace": {"min": "0.001", "max": "0.1"}}],
        "maxTrialCount": 12,
    },
}


def trial(name: str, experiment: str = "exp", **fields: object) -> TrialRecord:
    return TrialRecord(name=name, experiment_name=experiment, assignment={"lr": "0.01"}, **fields)


def obs(metric: str, value: str, step: int, time: dt.datetime = T0) -> Observation:
    return Observation(metric, value, step, time, Observation.parse_numeric(value))


@pytest.fixture
def exp(store: Store) -> str:
    store.create_experiment("exp", SPEC)
    return "exp"


# -- experiments ---------------------------------------------------------------------------------
def test_experiment_round_trips(store: Store) -> None:
    before = dt.datetime.now(UTC)
    created = store.create_experiment("exp", SPEC)
    fetched = store.get_experiment("exp")
    assert created == fetched
    assert fetched.name == "exp"
    assert fetched.spec == SPEC
    assert fetched.status == {}
    assert fetched.created_at.tzinfo is UTC
    assert before - dt.timedelta(seconds=1) <= fetched.created_at <= dt.datetime.now(UTC)
    assert fetched.updated_at == fetched.created_at


def test_duplicate_and_missing_experiments_raise(store: Store) -> None:
    store.create_experiment("exp", SPEC)
    with pytest.raises(AlreadyExistsError, match="experiment 'exp' already exists"):
        store.create_experiment("exp", {})
    with pytest.raises(NotFoundError, match="experiment 'nope' not found") as raised:
        store.get_experiment("nope")
    assert isinstance(raised.value, KeyError)
    for call in (
        lambda: store.update_experiment("nope", status={"a": 1}),
        lambda: store.delete_experiment("nope"),
        lambda: store.list_trials("nope"),
        lambda: store.create_trial(trial("t", experiment="nope")),
    ):
        with pytest.raises(NotFoundError, match="'nope'"):
            call()
    assert store.get_experiment("exp").spec == SPEC  # the failed create changed nothing


def test_names_are_exact_and_case_sensitive(store: Store) -> None:
    store.create_experiment("exp", {})
    store.create_experiment("Exp", {})
    store.create_experiment("exp ", {})
    assert [e.name for e in store.list_experiments()] == ["exp", "Exp", "exp "]
    with pytest.raises(NotFoundError):
        store.get_experiment("EXP")


def test_list_experiments_oldest_first(store: Store) -> None:
    names = ["b", "a", "c", "aa"]
    for name in names:
        store.create_experiment(name, {"n": name})
    listed = store.list_experiments()
    assert [e.name for e in listed] == names
    assert [e.spec for e in listed] == [{"n": n} for n in names]


def test_update_experiment_replaces_documents(store: Store) -> None:
    created = store.create_experiment("exp", SPEC)
    status = {"conditions": [{"type": "Running", "status": "True"}], "trials": 3}
    updated = store.update_experiment("exp", status=status)
    assert updated.status == status and updated.spec == SPEC
    assert updated.updated_at >= created.updated_at
    assert updated.created_at == created.created_at
    new_spec = {"spec": {"maxTrialCount": 20}}
    updated = store.update_experiment("exp", spec=new_spec)
    assert updated.spec == new_spec and updated.status == status  # whole document, status kept
    assert store.get_experiment("exp") == updated


def test_delete_experiment_cascades_to_trials_and_their_logs(store: Store) -> None:
    store.create_experiment("gone", {})
    store.create_experiment("kept", {})
    for i in range(3):
        store.create_trial(trial(f"gone-{i}", "gone"))
        store.add_observations(f"gone-{i}", [obs("loss", "0.5", 0)])
    store.create_trial(trial("kept-0", "kept"))
    store.add_observations("kept-0", [obs("loss", "0.7", 0)])
    store.add_observations("orphan", [obs("loss", "0.9", 0)])

    store.delete_experiment("gone")

    assert [e.name for e in store.list_experiments()] == ["kept"]
    for i in range(3):
        with pytest.raises(NotFoundError, match=f"trial 'gone-{i}' not found"):
            store.get_trial(f"gone-{i}")
        assert store.get_observations(f"gone-{i}") == []
    assert [t.name for t in store.list_trials("kept")] == ["kept-0"]
    assert store.observation_counts("kept-0") == {"loss": 1}
    assert store.observation_counts("orphan") == {"loss": 1}
    store.create_experiment("gone", {})  # the name is free again, with no trials
    assert store.list_trials("gone") == []


# -- trials --------------------------------------------------------------------------------------
def test_trial_round_trips_every_field(store: Store, exp: str) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    record = TrialRecord(
        name="exp-abc123",
        experiment_name=exp,
        assignment={"lr": "0.01", "optimizer": "adam", "layers": "3"},
        condition=TrialCondition.RUNNING,
        reason="TrialRunning",
        message="Trial is running",
        labels={"team": "vision", "katib.kubeflow.org/experiment": "exp"},
        created_at=T0,
        start_time=dt.datetime(2024, 5, 17, 14, 31, 0, 1, tzinfo=plus_two),
        completion_time=None,
        runner_handle={"pid": 4242, "log": "/tmp/x.log", "gpus": [0, 1]},
        observation={"metrics": [{"name": "loss", "min": "0.1", "max": "0.9", "latest": "0.2"}]},
        early_stopping_rules=(
            {"name": "loss", "value": "0.5", "comparison": "GREATER", "startStep": 4},
        ),
    )
    created = store.create_trial(record)
    fetched = store.get_trial("exp-abc123")
    assert created == fetched
    expected_start = dt.datetime(2024, 5, 17, 12, 31, 0, 1, tzinfo=UTC)
    assert fetched == TrialRecord(
        **{**record.__dict__, "start_time": expected_start}  # same instant, given back in UTC
    )
    assert fetched.start_time is not None and fetched.start_time.tzinfo is UTC
    assert fetched.early_stopping_rules == record.early_stopping_rules


def test_trial_defaults_round_trip(store: Store, exp: str) -> None:
    record = trial("t")
    fetched = store.create_trial(record)
    assert fetched.condition is TrialCondition.CREATED
    assert (fetched.reason, fetched.message) == ("TrialCreated", "Trial is created")
    assert fetched.created_at == record.created_at
    assert fetched.start_time is None and fetched.completion_time is None
    assert (fetched.labels, fetched.runner_handle, fetched.observation) == ({}, {}, {})
    assert fetched.early_stopping_rules == ()


def test_duplicate_and_missing_trials_raise(store: Store, exp: str) -> None:
    store.create_trial(trial("t"))
    with pytest.raises(AlreadyExistsError, match="trial 't' already exists") as raised:
        store.create_trial(trial("t"))
    assert isinstance(raised.value, ValueError)
    with pytest.raises(NotFoundError, match="trial 'missing' not found"):
        store.get_trial("missing")
    with pytest.raises(NotFoundError, match="trial 'missing' not found"):
        store.update_trial("missing", condition=TrialCondition.RUNNING)
    assert [t.name for t in store.list_trials(exp)] == ["t"]


def test_list_trials_in_creation_order_filtered_by_condition(store: Store, exp: str) -> None:
    store.create_experiment("other", {})
    conditions = [
        TrialCondition.SUCCEEDED,
        TrialCondition.RUNNING,
        TrialCondition.FAILED,
        TrialCondition.RUNNING,
        TrialCondition.CREATED,
        TrialCondition.EARLY_STOPPED,
    ]
    names = [f"t{9 - i}" for i in range(len(conditions))]  # creation order != name order
    for name, condition in zip(names, conditions, strict=True):
        store.create_trial(trial(name, condition=condition))
    store.create_trial(trial("other-1", "other", condition=TrialCondition.RUNNING))

    assert [t.name for t in store.list_trials(exp)] == names
    running = store.list_trials(exp, [TrialCondition.RUNNING])
    assert [t.name for t in running] == ["t8", "t6"]
    active = store.list_trials(exp, (c for c in TrialCondition if c.is_active))
    assert [t.name for t in active] == ["t8", "t6", "t5"]
    assert store.list_trials(exp, []) == []
    assert store.count_trials(exp) == {
        TrialCondition.SUCCEEDED: 1,
        TrialCondition.RUNNING: 2,
        TrialCondition.FAILED: 1,
        TrialCondition.CREATED: 1,
        TrialCondition.EARLY_STOPPED: 1,
    }
    assert store.count_trials("other") == {TrialCondition.RUNNING: 1}


def test_update_trial_sets_only_given_fields(store: Store, exp: str) -> None:
    store.create_trial(trial("t", labels={"a": "b"}))
    running = store.update_trial(
        "t",
        condition=TrialCondition.RUNNING,
        reason="TrialRunning",
        start_time=T0,
        runner_handle={"pid": 7},
    )
    assert running.condition is TrialCondition.RUNNING
    assert (running.reason, running.message) == ("TrialRunning", "Trial is created")
    assert running.start_time == T0 and running.runner_handle == {"pid": 7}
    assert running.labels == {"a": "b"}
    done = store.update_trial(
        "t",
        condition=TrialCondition.SUCCEEDED,
        reason="TrialSucceeded",
        message="done",
        completion_time=T0 + dt.timedelta(minutes=5),
        observation={"metrics": [{"name": "loss", "latest": "0.1"}]},
        early_stopping_rules=[{"name": "loss", "value": "0.3"}],
    )
    assert done == store.get_trial("t")
    assert done.start_time == T0 and done.runner_handle == {"pid": 7}
    assert done.completion_time == T0 + dt.timedelta(minutes=5)
    assert done.early_stopping_rules == ({"name": "loss", "value": "0.3"},)
    assert store.update_trial("t") == done  # nothing to change


def test_update_trial_compare_and_set(store: Store, exp: str) -> None:
    store.create_trial(trial("t", condition=TrialCondition.RUNNING))
    stopped = store.update_trial(
        "t",
        condition=TrialCondition.EARLY_STOPPED,
        reason="TrialEarlyStopped",
        expect_condition=[TrialCondition.RUNNING],
    )
    assert stopped.condition is TrialCondition.EARLY_STOPPED
    late = store.update_trial(
        "t",
        condition=TrialCondition.SUCCEEDED,
        reason="TrialSucceeded",
        message="late",
        expect_condition=[TrialCondition.CREATED, TrialCondition.RUNNING],
    )
    assert late == stopped  # unchanged, and says so
    assert store.get_trial("t").condition is TrialCondition.EARLY_STOPPED
    assert store.get_trial("t").message == "Trial is created"
    never = store.update_trial("t", message="x", expect_condition=[])
    assert never.message == "Trial is created"
    with pytest.raises(NotFoundError, match="trial 'ghost' not found"):
        store.update_trial(
            "ghost", condition=TrialCondition.KILLED, expect_condition=[TrialCondition.RUNNING]
        )


def test_invalid_values_are_rejected_with_the_field_named(store: Store, exp: str) -> None:
    naive = dt.datetime(2024, 1, 1)
    with pytest.raises(ValueError, match="created_at must be timezone-aware"):
        store.create_trial(trial("t", created_at=naive))
    store.create_trial(trial("t"))
    with pytest.raises(ValueError, match="start_time must be timezone-aware"):
        store.update_trial("t", start_time=naive)
    with pytest.raises(ValueError, match="unknown trial condition 'Done'"):
        store.update_trial("t", condition="Done")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"trial name .* at most 255"):
        store.create_trial(trial("x" * 256))
    with pytest.raises(TypeError, match="trial message must be a str, got NoneType"):
        store.create_trial(trial("u", message=None))
    with pytest.raises(ValueError, match="experiment name must be a non-empty string"):
        store.create_experiment("", {})
    with pytest.raises(ValueError, match=r"trial reason .* at most 255"):
        store.update_trial("t", reason="R" * 300)
    with pytest.raises(ValueError, match="time of observation 'loss' must be timezone-aware"):
        store.add_observations("t", [Observation("loss", "1", 0, naive, 1.0)])
    with pytest.raises(TypeError, match=r"runner_handle\.started is datetime .* JSON cannot"):
        store.update_trial("t", runner_handle={"started": T0})
    assert store.get_trial("t") == store.list_trials(exp)[0]  # nothing half-written
    store.create_trial(trial("x" * 255))  # the limit itself is fine


def test_unicode_and_long_text_round_trip(store: Store) -> None:
    name = "эксперимент-実験-🚀"
    spec = {"описание": "学習率 η 🚀", "quote": 'it\'s "quoted" \\ back\\slash', "nul": "a\tb"}
    store.create_experiment(name, spec)
    assert store.get_experiment(name).spec == spec
    long_message = ("Traceback (most recent call last):\n  ошибка 💥 " * 20_000)[:1_000_000]
    store.create_trial(
        TrialRecord(
            name="試行-1",
            experiment_name=name,
            assignment={"η": "0.1", "optimizer": "адам"},
            labels={"ключ": "значение"},
        )
    )
    store.update_trial("試行-1", condition=TrialCondition.FAILED, message=long_message)
    fetched = store.get_trial("試行-1")
    assert fetched.message == long_message
    assert fetched.assignment == {"η": "0.1", "optimizer": "адам"}
    store.add_observations("試行-1", [obs("точность", "0.5", 0), obs("損失", "ü-non-numeric", 0)])
    assert {o.metric_name: o.value for o in store.get_observations("試行-1")} == {
        "точность": "0.5",
        "損失": "ü-non-numeric",
    }
    assert [e.name for e in store.list_experiments()] == [name]


# -- observation logs ----------------------------------------------------------------------------
def test_observations_ordered_by_time_then_insertion(store: Store) -> None:
    t = [T0 + dt.timedelta(seconds=s) for s in range(4)]
    store.add_observations("t", [obs("loss", "3", 3, t[3]), obs("loss", "1", 1, t[1])])
    store.add_observations(
        "t", [obs("loss", "2a", 2, t[2]), obs("loss", "2b", 2, t[2]), obs("acc", "0", 0, t[0])]
    )
    store.add_observations("t", [obs("loss", "2c", 2, t[2]), obs("loss", "z", 0, ZERO_TIME)])
    values = [o.value for o in store.get_observations("t")]
    assert values == ["z", "0", "1", "2a", "2b", "2c", "3"]


def test_observation_filters_match_katib(store: Store) -> None:
    t = [T0 + dt.timedelta(milliseconds=250 * i) for i in range(8)]
    logs = [obs("loss" if i % 2 == 0 else "acc", str(i), i, t[i]) for i in range(8)]
    store.add_observations("t", logs)
    store.add_observations("other", [obs("loss", "99", 0, t[3])])

    def values(**filters: object) -> list[str]:
        return [o.value for o in store.get_observations("t", **filters)]  # type: ignore[arg-type]

    assert values() == [str(i) for i in range(8)]
    assert values(metric_name="loss") == ["0", "2", "4", "6"]
    assert values(metric_name="") == [str(i) for i in range(8)]  # Katib: empty = no filter
    assert values(metric_name="LOSS") == []
    assert values(start_time=t[3]) == ["3", "4", "5", "6", "7"]  # bounds inclusive
    assert values(end_time=t[3]) == ["0", "1", "2", "3"]
    assert values(metric_name="acc", start_time=t[2], end_time=t[5]) == ["3", "5"]
    shifted = t[4].astimezone(dt.timezone(dt.timedelta(hours=-7)))  # same instant
    assert values(start_time=shifted, end_time=shifted) == ["4"]
    assert values(start_time=t[5], end_time=t[4]) == []
    assert store.get_observations("nobody") == []


def test_times_round_trip_with_microseconds_and_katib_zero_time(store: Store) -> None:
    times = [
        ZERO_TIME,
        dt.datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(
            2024, 2, 29, 1, 2, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
        ),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    store.add_observations("t", [obs("m", str(i), i, when) for i, when in enumerate(times)])
    got = store.get_observations("t")
    assert [o.time for o in got] == times  # aware datetimes compare by instant
    assert all(o.time.tzinfo is UTC for o in got)
    assert got[0].time == ZERO_TIME
    zero_only = store.get_observations("t", start_time=ZERO_TIME, end_time=ZERO_TIME)
    assert [o.value for o in zero_only] == ["0"]


def test_special_and_non_numeric_values(store: Store) -> None:
    values = ["0.25", "nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-0.0", "abc", "", "7"]
    store.add_observations("t", [obs("m", v, i) for i, v in enumerate(values)])
    store.add_observations("t", [Observation.of("m", float("nan"), 20)])
    store.add_observations("t", [Observation("m", "0.5", 21, T0, None)])  # numeric left out
    got = {o.step: o for o in store.get_observations("t")}
    assert [got[i].value for i in range(len(values))] == values  # text kept exactly
    assert got[0].numeric == 0.25
    for step in (1, 2, 20):
        assert got[step].numeric is not None and math.isnan(got[step].numeric)
    assert got[3].numeric == math.inf and got[5].numeric == math.inf and got[6].numeric == math.inf
    assert got[4].numeric == -math.inf
    assert got[7].numeric == 0.0 and math.copysign(1, got[7].numeric) == -1
    assert got[8].numeric is None and got[9].numeric is None
    assert got[10].numeric == 7.0
    assert got[21].numeric == 0.5


def test_steps_and_counts(store: Store) -> None:
    assert store.add_observations("t", []) == 0
    big = 2**40 + 3
    written = store.add_observations(
        "t", [obs("loss", "1", 0), obs("loss", "2", big), obs("acc", "3", 1)]
    )
    assert written == 3
    assert [o.step for o in store.get_observations("t", "loss")] == [0, big]
    assert store.observation_counts("t") == {"loss": 2, "acc": 1}
    assert store.observation_counts("none") == {}
    store.delete_observations("t")
    assert store.observation_counts("t") == {}
    store.delete_observations("t")  # deleting nothing is fine


def test_observations_for_many_trials(store: Store) -> None:
    names = [f"trial-{i}" for i in range(1203)]  # more than one IN chunk
    for i, name in enumerate(names[:5]):
        store.add_observations(
            name, [obs("loss", str(i), 1, T0 + dt.timedelta(seconds=1)), obs("loss", "x", 0)]
        )
        store.add_observations(name, [obs("acc", "a", 0)])
    store.add_observations(names[-1], [obs("loss", "last", 0)])
    got = store.get_observations_for_trials([*names, "trial-0"], "loss")
    assert list(got) == names
    assert [o.value for o in got["trial-3"]] == ["x", "3"]
    assert got["trial-7"] == []
    assert [o.value for o in got[names[-1]]] == ["last"]
    every = store.get_observations_for_trials(["trial-1"])
    assert every == {"trial-1": store.get_observations("trial-1")}
    assert store.get_observations_for_trials([]) == {}


def test_ping_and_close(store: Store) -> None:
    store.ping()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_experiment("exp")


# -- incremental reads and objective ranking ------------------------------------------------
def loss(value: str) -> dict[str, object]:
    return {"metrics": [{"name": "loss", "min": value, "max": value, "latest": value}]}


def test_list_trial_changes_returns_each_write_once(store: Store, exp: str) -> None:
    store.create_experiment("other", SPEC)
    store.create_trial(trial("a"))
    store.create_trial(trial("b"))
    store.create_trial(trial("x", experiment="other"))
    first = store.list_trial_changes(exp, None)
    assert [t.name for t in first.trials] == ["a", "b"]
    assert store.list_trial_changes(exp, first.seq).trials == []
    store.update_trial("x", condition=TrialCondition.RUNNING)  # another experiment's trial
    assert store.list_trial_changes(exp, first.seq).trials == []
    store.update_trial("b", condition=TrialCondition.RUNNING)
    store.create_trial(trial("c"))
    second = store.list_trial_changes(exp, first.seq)
    assert [(t.name, t.condition) for t in second.trials] == [
        ("b", TrialCondition.RUNNING),
        ("c", TrialCondition.CREATED),
    ]
    assert second.seq > first.seq
    # a compare-and-set that does not apply changes nothing visible
    store.update_trial("a", condition=TrialCondition.KILLED, expect_condition=["Running"])
    assert store.list_trial_changes(exp, second.seq).trials == []
    # an update without fields is not a change
    store.update_trial("c")
    assert store.list_trial_changes(exp, second.seq).trials == []
    with pytest.raises(NotFoundError, match="'nope'"):
        store.list_trial_changes("nope", None)


def test_objective_value_ranks_trials_and_picks_the_best(store: Store, exp: str) -> None:
    assert store.best_trial(exp) is None
    store.create_trial(trial("a", observation=loss("0.5")))
    store.create_trial(trial("b"))
    store.create_trial(trial("c"))
    store.create_trial(trial("d", observation=loss("0.2")))
    store.create_trial(trial("e", observation=loss("nan")))
    store.update_trial("b", condition=TrialCondition.FAILED, observation=loss("0.01"))
    store.update_trial("c", condition=TrialCondition.SUCCEEDED, observation=loss("0.2"))
    best = store.best_trial(exp)
    assert best is not None and best.name == "c"  # Failed b never wins; c ties d, created first
    ranked = [t.name for t in store.list_trials_by_objective(exp)]
    assert ranked == ["b", "c", "d", "a", "e"]  # no value (NaN) last
    assert [t.name for t in store.list_trials_by_objective(exp, exclude_failed=True)] == [
        "c",
        "d",
        "a",
        "e",
    ]
    assert [t.name for t in store.list_trials_by_objective(exp, limit=2, offset=1)] == ["c", "d"]
    assert [t.name for t in store.list_trials_by_objective(exp, limit=5, offset=3)] == ["a", "e"]
    assert [t.name for t in store.list_trials_by_objective(exp, offset=4)] == ["e"]
    assert store.list_trials_by_objective(exp, offset=9) == []


def test_best_trial_follows_a_maximize_objective_and_its_strategy(store: Store) -> None:
    spec = {
        "spec": {
            "objective": {
                "type": "maximize",
                "objectiveMetricName": "acc",
                "metricStrategies": [{"name": "acc", "value": "latest"}],
            }
        }
    }
    store.create_experiment("m", spec)
    metrics = [{"name": "acc", "min": "0.1", "max": "0.9", "latest": "0.3"}]
    store.create_trial(trial("p", experiment="m", observation={"metrics": metrics}))
    store.create_trial(trial("q", experiment="m", observation=loss("5")))  # not the objective
    store.create_trial(
        trial(
            "r",
            experiment="m",
            observation={"metrics": [{"name": "acc", "min": "0", "max": "0.5", "latest": "0.4"}]},
        )
    )
    best = store.best_trial("m")
    assert best is not None and best.name == "r"  # by latest: 0.4 > 0.3 (max would pick p)
    assert [t.name for t in store.list_trials_by_objective("m")] == ["r", "p", "q"]


def test_create_trials_in_bulk_is_all_or_nothing(store: Store, exp: str) -> None:
    store.create_trial(trial("taken"))
    before = store.list_trial_changes(exp, None).seq
    with pytest.raises(AlreadyExistsError):
        store.create_trials([trial("new1"), trial("taken")])
    assert [t.name for t in store.list_trials(exp)] == ["taken"]
    assert store.create_trials([trial(f"b{i}", observation=loss(str(i))) for i in range(3)]) == 3
    changes = store.list_trial_changes(exp, before)
    assert [t.name for t in changes.trials] == ["b0", "b1", "b2"]
    best = store.best_trial(exp)
    assert best is not None and best.name == "b0"
    with pytest.raises(ValueError, match="one experiment"):
        store.create_trials([trial("x1"), trial("x2", experiment="other")])


def test_update_trials_applies_a_batch_in_one_go(store: Store, exp: str) -> None:
    for name in ("a", "b", "c"):
        store.create_trial(trial(name))
    store.update_trial("c", condition=TrialCondition.KILLED)
    before = store.list_trial_changes(exp, None).seq
    running = TrialCondition.RUNNING
    records = store.update_trials(
        [
            TrialUpdate("b", condition=running, runner_handle={"pid": 2}, start_time=T0),
            TrialUpdate("a", observation=loss("0.5"), completion_time=T0),
            TrialUpdate(  # compare-and-set: c is Killed, not Created, so it keeps its condition
                "c", condition=running, expect_condition=(TrialCondition.CREATED,)
            ),
            TrialUpdate("a", condition=TrialCondition.SUCCEEDED, reason="TrialSucceeded"),
        ]
    )
    assert [r.name for r in records] == ["b", "a", "c", "a"]
    assert records[0].condition is running and records[0].runner_handle == {"pid": 2}
    assert records[0].start_time == T0
    assert records[1] == records[3]  # both show the trial after the whole batch
    assert records[3].condition is TrialCondition.SUCCEEDED
    assert records[3].observation == loss("0.5") and records[3].completion_time == T0
    assert records[2].condition is TrialCondition.KILLED
    changes = store.list_trial_changes(exp, before)
    assert {t.name for t in changes.trials} == {"a", "b"}  # c did not change
    assert store.list_trial_changes(exp, changes.seq).trials == []
    best = store.best_trial(exp)
    assert best is not None and best.name == "a"


def test_update_trials_with_a_missing_trial_changes_nothing(store: Store, exp: str) -> None:
    store.create_trial(trial("a"))
    with pytest.raises(NotFoundError, match="'ghost'"):
        store.update_trials(
            [TrialUpdate("a", condition=TrialCondition.RUNNING), TrialUpdate("ghost")]
        )
    assert store.get_trial("a").condition is TrialCondition.CREATED
    assert store.update_trials([]) == []


def test_list_trial_changes_reads_the_experiment_with_them(store: Store, exp: str) -> None:
    """Where a store reads the experiment in the same transaction (every SQL backend), a
    reconcile step needs no read of its own: the record is the experiment as stored."""
    store.create_trial(trial("a"))
    store.update_experiment(exp, status={"trials": 1})
    changes = store.list_trial_changes(exp, None)
    assert changes.experiment == store.get_experiment(exp)
    assert changes.experiment.status == {"trials": 1}
    with pytest.raises(NotFoundError, match="'ghost'"):
        store.list_trial_changes("ghost", None)


def test_update_trials_stores_observations_whatever_the_compare_and_set(
    store: Store, exp: str
) -> None:
    """A trial's last rows go in with its outcome, also when the outcome's compare-and-set
    finds the trial stopped meanwhile (the rows are what it reported all the same)."""
    store.create_trial(trial("a", condition=TrialCondition.RUNNING))
    store.create_trial(trial("b", condition=TrialCondition.KILLED))
    rows = {"a": [obs("loss", "0.5", 0)], "b": [obs("loss", "0.7", 0), obs("loss", "0.6", 1)]}
    done = TrialCondition.SUCCEEDED
    records = store.update_trials(
        [
            TrialUpdate(n, condition=done, expect_condition=(TrialCondition.RUNNING,))
            for n in ("a", "b")
        ],
        rows,
    )
    assert [r.condition for r in records] == [done, TrialCondition.KILLED]
    assert store.get_observations("a") == rows["a"]
    assert store.get_observations("b") == rows["b"]
    assert store.update_trials([], {"c": [obs("loss", "1", 0)]}) == []  # rows only
    assert [o.value for o in store.get_observations("c")] == ["1"]


def test_write_trials_creates_updates_and_appends_at_once(store: Store, exp: str) -> None:
    store.create_trial(trial("a", condition=TrialCondition.RUNNING))
    before = store.list_trial_changes(exp, None).seq
    records = store.write_trials(
        [trial("b", condition=TrialCondition.RUNNING, runner_handle={"pid": 3})],
        [TrialUpdate("a", condition=TrialCondition.SUCCEEDED, observation=loss("0.5"))],
        {"a": [obs("loss", "0.5", 0)]},
    )
    assert [(r.name, r.condition) for r in records] == [("a", TrialCondition.SUCCEEDED)]
    changes = store.list_trial_changes(exp, before)
    assert [(t.name, t.condition) for t in changes.trials] == [
        ("a", TrialCondition.SUCCEEDED),
        ("b", TrialCondition.RUNNING),
    ]
    assert store.get_trial("b").runner_handle == {"pid": 3}
    assert [o.value for o in store.get_observations("a")] == ["0.5"]
    best = store.best_trial(exp)
    assert best is not None and best.name == "a"


def test_write_trials_is_all_or_nothing(store: Store, exp: str) -> None:
    """A taken name among the new trials leaves the outcome and the rows unwritten."""
    store.create_trial(trial("a", condition=TrialCondition.RUNNING))
    store.create_trial(trial("b"))
    with pytest.raises(AlreadyExistsError):
        store.write_trials(
            [trial("b")],
            [TrialUpdate("a", condition=TrialCondition.SUCCEEDED)],
            {"a": [obs("loss", "0.5", 0)]},
        )
    assert store.get_trial("a").condition is TrialCondition.RUNNING
    assert store.get_observations("a") == []
