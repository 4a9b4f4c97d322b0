"""Warm start and enqueue through the reconciler: the queue drains first within
parallelTrialCount, survives an interruption, and warm-start trials reach the algorithm
without being run or counted toward maxTrialCount."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from controller.clients import InProcessSuggestionClient
from controller.collecting import LogWatcher
from controller.gpus import GpuAllocator
from controller.local import submit
from controller.reconcile import Reconciler
from controller.runners.base import TrialLaunch
from controller.runners.fake import FakeOutcome, FakeRunner
from suggestion.service import SuggestionServicer
from tunery.api import api_pb2
from tunery.experiment import load_experiment
from tunery.seeding import WARM_START_LABEL, enqueue, is_queued, results_from, warm_start
from tunery.store.base import Store
from tunery.trials import TrialCondition


def experiment(**spec: Any) -> dict[str, Any]:
    container = {"name": "main", "command": ["train", "--x=${trialParameters.x}"]}
    doc = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "exp"},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "scripted"},
            "parallelTrialCount": 2,
            "maxTrialCount": 6,
            "parameters": [
                {"name": "x", "parameterType": "int", "feasibleSpace": {"min": "0", "max": "99"}}
            ],
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": [{"name": "x", "reference": "x"}],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {"template": {"spec": {"containers": [container]}}},
                },
            },
        },
    }
    doc["spec"].update(spec)
    return load_experiment(doc).to_document()


class Scripted:
    """Proposes x = 0, 1, 2, ...; keeps every request."""

    def __init__(self) -> None:
        self.next = 0
        self.requests: list[api_pb2.GetSuggestionsRequest] = []

    def ValidateAlgorithmSettings(self, request, context):
        return api_pb2.ValidateAlgorithmSettingsReply()

    def GetSuggestions(self, request, context):
        self.requests.append(request)
        reply = api_pb2.GetSuggestionsReply()
        for _ in range(request.current_request_number):
            x, self.next = self.next, self.next + 1
            reply.parameter_assignments.add(
                assignments=[api_pb2.ParameterAssignment(name="x", value=str(x))]
            )
        return reply


def x_of(launch: TrialLaunch) -> int:
    args = launch.job["spec"]["template"]["spec"]["containers"][0]["command"]
    return int(args[1].split("=")[1])


def reconciler(
    store: Store, tmp_path: Path, doc: dict[str, Any], runner: FakeRunner, servicer: Any
) -> Reconciler:
    r = Reconciler(
        store,
        "exp",
        runner=runner,
        suggestions=InProcessSuggestionClient(servicer),
        watcher_factory=LogWatcher.factory(store, doc),
        allocator=GpuAllocator([]),
        base_dir=tmp_path,
        logs_dir=tmp_path / "logs",
    )
    r.validate()
    return r


def drive(r: Reconciler, max_steps: int = 500) -> None:
    for _ in range(max_steps):
        if r.step().done:
            r.close()
            return
        time.sleep(0.01)
    raise AssertionError("experiment did not complete")


def loss(launch: TrialLaunch, duration: float = 0.0) -> FakeOutcome:
    return FakeOutcome([f"loss={(x_of(launch) - 70) ** 2}"], duration=duration)


def test_the_queue_drains_first_within_parallel_trial_count(
    sqlite_store: Store, tmp_path: Path
) -> None:
    doc = experiment(parallelTrialCount=2, maxTrialCount=6)
    submit(sqlite_store, doc, tmp_path)
    enqueue(sqlite_store, "exp", [{"x": 50}, {"x": 51}, {"x": 52}])
    servicer = Scripted()
    runner = FakeRunner(lambda launch: loss(launch, 0.2))
    r = reconciler(sqlite_store, tmp_path, doc, runner, servicer)
    r.step()
    trials = sqlite_store.list_trials("exp")
    assert [t.condition for t in trials] == [
        TrialCondition.RUNNING,
        TrialCondition.RUNNING,
        TrialCondition.CREATED,
    ]
    assert not servicer.requests  # the queue is served first: no suggestion asked yet
    drive(r)
    order = [x_of(launch) for launch in runner.launches]  # a wave starts concurrently
    assert set(order[:2]) == {50, 51} and set(order[2:4]) == {52, 0}
    assert sorted(x_of(launch) for launch in runner.launches)[:3] == [0, 1, 2]
    assert len(runner.launches) == 6  # enqueued trials count toward maxTrialCount
    first = servicer.requests[0]
    sent = {t.spec.parameter_assignments.assignments[0].value: t for t in first.trials}
    assert {"50", "51", "52"} <= set(sent)  # the algorithm sees the enqueued points
    assert sum(r.current_request_number for r in servicer.requests) == 3
    assert all(t.condition is TrialCondition.SUCCEEDED for t in sqlite_store.list_trials("exp"))


def test_an_interruption_keeps_the_queue_and_resume_drains_it(
    sqlite_store: Store, tmp_path: Path
) -> None:
    doc = experiment(parallelTrialCount=2, maxTrialCount=6)
    submit(sqlite_store, doc, tmp_path)
    enqueue(sqlite_store, "exp", [{"x": x} for x in (60, 61, 62, 63)])
    first = FakeRunner(lambda launch: loss(launch, 60))
    r = reconciler(sqlite_store, tmp_path, doc, first, Scripted())
    r.step()
    r.interrupt()  # what Ctrl-C does
    r.close()
    trials = sqlite_store.list_trials("exp")
    assert [t.condition for t in trials] == [TrialCondition.KILLED] * 2 + [
        TrialCondition.CREATED
    ] * 2
    assert [is_queued(t) for t in trials] == [False, False, True, True]
    assert sorted(first.stopped) == sorted(t.name for t in trials[:2])
    # resume: a new controller starts the two still queued before asking the algorithm
    servicer = Scripted()
    second = FakeRunner(loss)
    drive(reconciler(sqlite_store, tmp_path, doc, second, servicer))
    # a wave starts its trials concurrently: the two queued come first, in either order
    assert {x_of(launch) for launch in second.launches[:2]} == {62, 63}
    assert len(sqlite_store.list_trials("exp")) == 6
    assert servicer.requests and all(
        {"62", "63"} <= {t.spec.parameter_assignments.assignments[0].value for t in q.trials}
        for q in servicer.requests
    )


def test_warm_start_trials_reach_the_algorithm_and_are_outside_the_budget(
    sqlite_store: Store, tmp_path: Path
) -> None:
    doc = experiment(parallelTrialCount=1, maxTrialCount=3)
    submit(sqlite_store, doc, tmp_path)
    warm_start(
        sqlite_store,
        "exp",
        results_from([({"x": x}, float((x - 70) ** 2)) for x in (10, 20, 30)], "loss"),
    )
    servicer = Scripted()
    runner = FakeRunner(loss)
    drive(reconciler(sqlite_store, tmp_path, doc, runner, servicer))
    assert len(runner.launches) == 3  # maxTrialCount counts the trials run, not the imported
    trials = sqlite_store.list_trials("exp")
    assert len(trials) == 6
    status = sqlite_store.get_experiment("exp").status
    assert status["trials"] == status["trialsSucceeded"] == 6
    warm = servicer.requests[0].trials
    assert len(warm) == 3
    assert all(t.status.condition == api_pb2.TrialStatus.SUCCEEDED for t in warm)
    assert [t.status.observation.metrics[0].value for t in warm] == ["3600.0", "2500.0", "1600.0"]
    assert all(t.spec.labels[WARM_START_LABEL] == "true" for t in warm)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tpe_first_suggestion_after_warm_start_is_model_based(
    sqlite_store: Store, tmp_path: Path, seed: int
) -> None:
    """12 warm-start results (more than tpe's 10 startup trials) around x = 70: the first
    trial tpe proposes comes from its model, near the good region, instead of the prior."""
    doc = experiment(
        parallelTrialCount=1,
        maxTrialCount=1,
        algorithm={
            "algorithmName": "tpe",
            "algorithmSettings": [{"name": "random_state", "value": str(seed)}],
        },
    )
    submit(sqlite_store, doc, tmp_path)
    points = [({"x": x}, float((x - 70) ** 2)) for x in range(0, 96, 8)]
    assert len(warm_start(sqlite_store, "exp", results_from(points, "loss")).added) == 12
    runner = FakeRunner(loss)
    drive(reconciler(sqlite_store, tmp_path, doc, runner, SuggestionServicer()))
    (launch,) = runner.launches
    assert 56 <= x_of(launch) <= 88, x_of(launch)


def test_annotations_seed_an_experiment_once(sqlite_store: Store, tmp_path: Path) -> None:
    """The YAML/operator form: annotations name the points to enqueue and the experiments to
    warm start from; a restarted controller adds nothing twice."""
    old = experiment()
    old["metadata"]["name"] = "old"
    submit(sqlite_store, old, tmp_path)
    warm_start(sqlite_store, "old", results_from([({"x": 69}, 1.0), ({"x": 99}, 841.0)], "loss"))
    doc = experiment(parallelTrialCount=1, maxTrialCount=3)
    doc["metadata"]["annotations"] = {
        "tunery.io/enqueue": '[{"x": 40}, {"x": "41"}]',
        "tunery.io/warm-start": "old",
    }
    doc = load_experiment(doc).to_document()
    submit(sqlite_store, doc, tmp_path)
    runner = FakeRunner(loss)
    r = reconciler(sqlite_store, tmp_path, doc, runner, Scripted())
    r.step()
    r.close()
    again = FakeRunner(loss)
    drive(reconciler(sqlite_store, tmp_path, doc, again, Scripted()))  # a restarted controller
    launched = [x_of(launch) for launch in [*runner.launches, *again.launches]]
    assert launched == [40, 41, 0]
    trials = sqlite_store.list_trials("exp")
    assert len(trials) == 5
    assert [dict(t.assignment)["x"] for t in trials if t.reason == "WarmStart"] == ["69", "99"]


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({"tunery.io/enqueue": '[{"x": 400}]'}, "['tunery.io/enqueue'][0].x: 400"),
        ({"tunery.io/enqueue": "{x: 1"}, "['tunery.io/enqueue']: not JSON"),
        ({"tunery.io/warm-start": "nope"}, "warm start: "),
    ],
)
def test_bad_seed_annotations_fail_the_experiment_clearly(
    sqlite_store: Store, tmp_path: Path, annotations: dict[str, str], message: str
) -> None:
    from controller.reconcile import ReconcileError

    doc = experiment()
    doc["metadata"]["annotations"] = annotations
    doc = load_experiment(doc).to_document()
    submit(sqlite_store, doc, tmp_path)
    r = reconciler(sqlite_store, tmp_path, doc, FakeRunner(loss), Scripted())
    with pytest.raises(ReconcileError, match="Seeding failed") as info:
        r.step()
    assert message in str(info.value)
    status = sqlite_store.get_experiment("exp").status
    assert status["conditions"][-1]["type"] == "Failed"
    assert not sqlite_store.list_trials("exp")
