"""Experiments and trials are keyed by (namespace, name): the same names live side by side.

Run on every SQL backend (``store`` fixture), through :class:`RetryingStore`, and on the
operator tests' in-memory store (``tests/kubernetes/k8s_memstore.py``), which mirrors the
contract.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunery.retry import RetryPolicy
from tunery.store import (
    DEFAULT_NAMESPACE,
    AlreadyExistsError,
    AmbiguousTrialError,
    NotFoundError,
    Store,
    StoreError,
    TrialRecord,
    TrialUpdate,
    open_store,
)
from tunery.store.retrying import RetryingStore
from tunery.trials import Observation, TrialCondition

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "kubernetes"))
from k8s_memstore import MemoryStore

T0 = dt.datetime(2024, 5, 17, 12, 0, tzinfo=dt.UTC)


def spec(goal: str) -> dict[str, object]:
    return {
        "metadata": {"name": "mnist"},
        "spec": {"objective": {"type": "minimize", "objectiveMetricName": "loss"}, "goal": goal},
    }


def loss(value: str) -> dict[str, object]:
    return {"metrics": [{"name": "loss", "min": value, "max": value, "latest": value}]}


@pytest.fixture(params=["sql", "retrying"])
def root(request: pytest.FixtureRequest, store: Store) -> Store:
    if request.param == "retrying":
        return RetryingStore(store, RetryPolicy(limit=1.0))
    return store


@pytest.fixture
def memory_root() -> Iterator[Store]:
    yield MemoryStore()


def _two_mnists(root: Store) -> tuple[Store, Store]:
    """``mnist`` in namespaces a and b, each with trials t1 and t2 and a loss logged for t1."""
    a, b = root.in_namespace("a"), root.in_namespace("b")
    assert (a.namespace, b.namespace, root.namespace) == ("a", "b", DEFAULT_NAMESPACE)
    for view, goal, values in ((a, "A", ("0.5", "0.2")), (b, "B", ("0.1", "0.9"))):
        view.create_experiment("mnist", spec(goal))
        for name, value in zip(("t1", "t2"), values, strict=True):
            view.create_trial(TrialRecord(name, "mnist", {"lr": goal}, observation=loss(value)))
        view.add_observations("t1", [Observation.of("loss", values[0], 0, T0)])
    return a, b


def check_experiments_and_trials_are_isolated(root: Store) -> None:
    a, b = _two_mnists(root)
    assert a.get_experiment("mnist").spec == spec("A")
    assert b.get_experiment("mnist").spec == spec("B")
    assert [e.spec for e in a.list_experiments()] == [spec("A")]
    assert root.list_experiments() == []  # the default namespace has none
    with pytest.raises(NotFoundError, match="'mnist'"):
        root.get_experiment("mnist")
    with pytest.raises(NotFoundError, match="'t1'"):
        root.get_trial("t1")
    # same trial names, own rows
    assert a.get_trial("t1").assignment == {"lr": "A"}
    assert b.get_trial("t1").assignment == {"lr": "B"}
    assert [t.name for t in b.list_trials("mnist")] == ["t1", "t2"]
    a.update_trial("t1", condition=TrialCondition.SUCCEEDED, reason="done")
    a.update_trials([TrialUpdate("t2", condition=TrialCondition.FAILED)])
    assert b.get_trial("t1").condition is TrialCondition.CREATED
    assert b.count_trials("mnist") == {TrialCondition.CREATED: 2}
    assert a.count_trials("mnist") == {TrialCondition.SUCCEEDED: 1, TrialCondition.FAILED: 1}
    assert [t.name for t in a.list_trials("mnist", [TrialCondition.CREATED])] == []
    best_a, best_b = a.best_trial("mnist"), b.best_trial("mnist")
    assert best_a is not None and best_a.assignment == {"lr": "A"} and best_a.name == "t1"
    assert best_b is not None and best_b.assignment == {"lr": "B"} and best_b.name == "t1"
    ranked = b.list_trials_by_objective("mnist")
    assert [(t.name, t.assignment["lr"]) for t in ranked] == [("t1", "B"), ("t2", "B")]
    # a name taken in one namespace only is still taken there
    with pytest.raises(AlreadyExistsError):
        a.create_experiment("mnist", {})
    with pytest.raises(AlreadyExistsError):
        b.create_trial(TrialRecord("t1", "mnist", {}))
    # deleting a's mnist leaves b's, with its trials and observations
    a.delete_experiment("mnist")
    with pytest.raises(NotFoundError):
        a.get_trial("t1")
    assert a.get_observations("t1") == []
    assert [t.name for t in b.list_trials("mnist")] == ["t1", "t2"]
    assert [o.value for o in b.get_observations("t1")] == ["0.1"]


def check_observations_are_isolated(root: Store) -> None:
    a, b = _two_mnists(root)
    a.add_observations("t1", [Observation.of("loss", "0.4", 1, T0 + dt.timedelta(seconds=1))])
    assert [o.value for o in a.get_observations("t1")] == ["0.5", "0.4"]
    assert [o.value for o in b.get_observations("t1", "loss")] == ["0.1"]
    assert a.observation_counts("t1") == {"loss": 2}
    assert b.observation_counts("t1") == {"loss": 1}
    many = b.get_observations_for_trials(["t1", "t2"])
    assert {k: [o.value for o in v] for k, v in many.items()} == {"t1": ["0.1"], "t2": []}
    assert root.get_observations("t1") == []
    b.delete_observations("t1")
    assert b.get_observations("t1") == []
    assert len(a.get_observations("t1")) == 2


def check_namespace_lists_look_across_namespaces(root: Store) -> None:
    a, _ = _two_mnists(root)
    a.create_trial(TrialRecord("only-a", "mnist", {}))
    assert root.trial_namespaces("t1") == ["a", "b"]
    assert a.trial_namespaces("only-a") == ["a"]
    assert root.trial_namespaces("nope") == []
    assert root.list_namespaces() == ["a", "b"]
    assert root.for_trial("only-a").namespace == "a"  # the one namespace holding it
    assert root.for_trial("nope") is root  # none holds it: the store's own
    with pytest.raises(AmbiguousTrialError, match="'t1' exists in namespaces a, b") as raised:
        root.for_trial("t1")
    assert raised.value.namespaces == ["a", "b"]
    root.create_experiment("local", {})
    assert a.list_namespaces() == ["a", "b", DEFAULT_NAMESPACE]


def check_bad_namespaces_are_refused(root: Store) -> None:
    for bad in ("", "x" * 64):
        with pytest.raises(ValueError, match="namespace"):
            root.in_namespace(bad)
    assert root.in_namespace(root.namespace) is root


SCENARIOS = [
    check_experiments_and_trials_are_isolated,
    check_observations_are_isolated,
    check_namespace_lists_look_across_namespaces,
    check_bad_namespaces_are_refused,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__[6:])
def test_namespaces(root: Store, scenario) -> None:  # type: ignore[no-untyped-def]
    scenario(root)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__[6:])
def test_namespaces_in_memory(memory_root: Store, scenario) -> None:  # type: ignore[no-untyped-def]
    scenario(memory_root)


def test_trial_changes_count_per_experiment(store: Store) -> None:
    """Each namespace's mnist has its own change counter: a write in b is not a change of a's."""
    a, b = _two_mnists(store)
    seen = a.list_trial_changes("mnist", None)
    b.update_trial("t1", condition=TrialCondition.RUNNING)
    b.create_trials([TrialRecord("t3", "mnist", {}), TrialRecord("t4", "mnist", {})])
    assert a.list_trial_changes("mnist", seen.seq).trials == []
    a.update_trial("t2", condition=TrialCondition.RUNNING)
    assert [t.name for t in a.list_trial_changes("mnist", seen.seq).trials] == ["t2"]
    assert [t.name for t in b.list_trial_changes("mnist", None).trials] == ["t1", "t2", "t3", "t4"]


def test_open_store_binds_a_namespace_and_views_share_the_engine(db_url: str) -> None:
    a = open_store(db_url, namespace="a")
    try:
        assert a.namespace == "a" and "namespace='a'" in repr(a)
        a.create_experiment("mnist", spec("A"))
        view = a.in_namespace(DEFAULT_NAMESPACE)
        assert view.list_experiments() == []
        assert view.in_namespace("a").get_experiment("mnist").spec == spec("A")
        view.close()  # a view closes only itself
        with pytest.raises(StoreError, match="closed"):
            view.list_experiments()
        assert a.get_experiment("mnist").spec == spec("A")
        other = a.in_namespace("b")
    finally:
        a.close()
    with pytest.raises(StoreError, match="closed"):  # closing the store closes its views
        other.list_experiments()
    with pytest.raises(ValueError, match="namespace"):
        open_store(db_url, namespace="")
