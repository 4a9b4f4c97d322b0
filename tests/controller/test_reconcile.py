"""The reconciler's Katib semantics, driven with a fake runner and a scripted algorithm.

Every test runs a whole experiment through ``Reconciler.step`` against a real SQLite store and
the real local collector (log files tailed into the store).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from controller.clients import InProcessSuggestionClient
from controller.collecting import LogWatcher
from controller.gpus import Gpu, GpuAllocator
from controller.local import submit
from controller.reconcile import ReconcileError, Reconciler
from controller.runners.base import TrialLaunch
from controller.runners.fake import FakeOutcome, FakeRunner
from tunery.api import api_pb2
from tunery.experiment import load_experiment
from tunery.store.base import Store
from tunery.trials import Observation, StopDecision, TrialCondition


def experiment(**spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "command": ["train", "--x=${trialParameters.x}"]}
    if "gpus" in spec:
        container["resources"] = {"limits": {"nvidia.com/gpu": spec.pop("gpus")}}
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
    """A Suggestion servicer proposing x = 0, 1, 2, ... (up to ``limit``)."""

    def __init__(self, limit: int = 100, invalid: str | None = None) -> None:
        self.next = 0
        self.limit = limit
        self.invalid = invalid
        self.requests: list[api_pb2.GetSuggestionsRequest] = []

    def ValidateAlgorithmSettings(self, request, context):
        if self.invalid:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, self.invalid)
        return api_pb2.ValidateAlgorithmSettingsReply()

    def GetSuggestions(self, request, context):
        self.requests.append(request)
        reply = api_pb2.GetSuggestionsReply()
        if self.next + request.current_request_number > self.limit:
            context.abort(grpc.StatusCode.OUT_OF_RANGE, "space exhausted")
        for _ in range(request.current_request_number):
            x, self.next = self.next, self.next + 1
            reply.parameter_assignments.add(
                assignments=[api_pb2.ParameterAssignment(name="x", value=str(x))]
            )
        return reply


def x_of(launch: TrialLaunch) -> int:
    args = launch.job["spec"]["template"]["spec"]["containers"][0]["command"]
    return int(args[1].split("=")[1])


def run(
    store: Store,
    tmp_path: Path,
    doc: dict[str, Any],
    handler: Callable[[TrialLaunch], FakeOutcome],
    *,
    servicer: Scripted | None = None,
    gpus: int = 0,
    stopper: Callable[[], Any] | None = None,
    max_steps: int = 500,
    runner_type: type[FakeRunner] = FakeRunner,
) -> tuple[Reconciler, FakeRunner]:
    submit(store, doc, tmp_path)
    runner = runner_type(handler)
    reconciler = Reconciler(
        store,
        "exp",
        runner=runner,
        suggestions=InProcessSuggestionClient(servicer or Scripted()),
        watcher_factory=LogWatcher.factory(store, doc),
        stopper_factory=(lambda trial: stopper()) if stopper else None,
        allocator=GpuAllocator([Gpu(str(i)) for i in range(gpus)]),
        base_dir=tmp_path,
        logs_dir=tmp_path / "logs",
    )
    reconciler.validate()
    for _ in range(max_steps):
        if reconciler.step().done:
            reconciler.close()
            return reconciler, runner
        time.sleep(0.01)
    raise AssertionError("experiment did not complete")


def status_of(store: Store) -> dict[str, Any]:
    return dict(store.get_experiment("exp").status)


def condition(store: Store) -> tuple[str, str]:
    from controller.status import current_condition

    cond = current_condition(status_of(store))
    assert cond is not None
    return cond["type"], cond["reason"]


def loss_lines(launch: TrialLaunch) -> FakeOutcome:
    x = x_of(launch)
    return FakeOutcome([f"epoch 1 loss={10 + x}", f"epoch 2 loss={(x - 3) ** 2}"])


def test_max_trial_count_with_katib_status(sqlite_store: Store, tmp_path: Path) -> None:
    run(sqlite_store, tmp_path, experiment(), loss_lines)
    assert condition(sqlite_store) == ("Succeeded", "ExperimentMaxTrialsReached")
    trials = sqlite_store.list_trials("exp")
    assert len(trials) == 6
    assert all(t.condition is TrialCondition.SUCCEEDED for t in trials)
    st = status_of(sqlite_store)
    assert st["trials"] == st["trialsSucceeded"] == 6 and st["trialsRunning"] == 0
    best = st["currentOptimalTrial"]
    assert best["parameterAssignments"] == [{"name": "x", "value": "3"}]
    loss = {m["name"]: m for m in best["observation"]["metrics"]}["loss"]
    assert (loss["min"], loss["latest"]) == ("0", "0")
    # observations were stored row by row with ordinal steps
    obs = sqlite_store.get_observations(best["bestTrialName"], "loss")
    assert [(o.step, o.value) for o in obs] == [(0, "13"), (1, "0")]
    assert "completionTime" in st


def test_parallelism_is_respected(sqlite_store: Store, tmp_path: Path) -> None:
    def slow(launch: TrialLaunch) -> FakeOutcome:
        return FakeOutcome(["loss=1"], duration=0.05)

    servicer = Scripted()
    run(
        sqlite_store,
        tmp_path,
        experiment(parallelTrialCount=3, maxTrialCount=7),
        slow,
        servicer=servicer,
    )
    assert sum(r.current_request_number for r in servicer.requests) == 7
    assert max(r.current_request_number for r in servicer.requests) <= 3
    # Katib sends every trial (running ones too) with each request
    last = servicer.requests[-1]
    assert last.total_request_number == len(last.trials) + last.current_request_number


def test_steps_read_only_the_trials_that_changed(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the first read lists every trial; later reads take the trials written since the
    previous one (the store's change counter), at most the trials a step touches, however long
    the history. The whole list is never read again, and the status stays exact."""
    reads: list[tuple[int | None, int]] = []
    list_trial_changes = sqlite_store.list_trial_changes

    def counting_changes(name: str, since: int | None) -> Any:
        changes = list_trial_changes(name, since)
        reads.append((since, len(changes.trials)))
        return changes

    def no_full_list(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the reconciler listed every trial")

    monkeypatch.setattr(sqlite_store, "list_trial_changes", counting_changes)
    monkeypatch.setattr(sqlite_store, "list_trials", no_full_list)
    run(sqlite_store, tmp_path, experiment(parallelTrialCount=3, maxTrialCount=12), loss_lines)
    assert [since for since, _ in reads].count(None) == 1  # the first read only
    assert max(count for since, count in reads if since is not None) <= 2 * 3
    assert sum(count for _, count in reads) <= 12 * 4  # each trial read about once per write
    st = status_of(sqlite_store)
    assert st["trials"] == st["trialsSucceeded"] == 12 and st["trialsRunning"] == 0


def test_a_store_without_a_change_counter_is_read_whole_each_time(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Store's default list_trial_changes (any store without the counter) returns every trial
    with counter 0; the reconciler then still sees every change."""
    default = functools.partial(Store.list_trial_changes, sqlite_store)
    monkeypatch.setattr(sqlite_store, "list_trial_changes", default)
    run(sqlite_store, tmp_path, experiment(parallelTrialCount=2, maxTrialCount=5), loss_lines)
    st = status_of(sqlite_store)
    assert st["trials"] == st["trialsSucceeded"] == 5 and st["trialsRunning"] == 0


def test_goal_reached_stops_the_rest(sqlite_store: Store, tmp_path: Path) -> None:
    def outcome(launch: TrialLaunch) -> FakeOutcome:
        x = x_of(launch)
        return FakeOutcome([f"loss={5 - x}"], duration=0 if x == 2 else 30)

    _, runner = run(
        sqlite_store,
        tmp_path,
        experiment(
            objective={"type": "minimize", "objectiveMetricName": "loss", "goal": 3},
            maxTrialCount=20,
            parallelTrialCount=3,
        ),
        outcome,
    )
    assert condition(sqlite_store) == ("Succeeded", "ExperimentGoalReached")
    by_condition = {t.condition for t in sqlite_store.list_trials("exp")}
    assert TrialCondition.KILLED in by_condition
    killed = [t for t in sqlite_store.list_trials("exp") if t.condition is TrialCondition.KILLED]
    assert all("ExperimentGoalReached" not in t.message and "goal" in t.message for t in killed)
    assert len(killed) == 2 and sorted(runner.stopped) == sorted(t.name for t in killed)


def test_max_failed_trial_count(sqlite_store: Store, tmp_path: Path) -> None:
    run(
        sqlite_store,
        tmp_path,
        experiment(maxFailedTrialCount=2, maxTrialCount=10),
        lambda launch: FakeOutcome(["Traceback: boom"], exit_code=1),
    )
    assert condition(sqlite_store) == ("Failed", "ExperimentFailed")
    failed = [t for t in sqlite_store.list_trials("exp") if t.condition is TrialCondition.FAILED]
    assert len(failed) >= 2
    assert failed[0].reason == "TrialFailed. Job reason: Error"
    assert failed[0].message.startswith("Trial has failed. Job message: exit code 1: Traceback")
    assert f"last lines of {failed[0].runner_handle['log']}:" in failed[0].message


def test_metrics_unavailable_names_the_metric_and_quotes_output(
    sqlite_store: Store, tmp_path: Path
) -> None:
    run(
        sqlite_store,
        tmp_path,
        experiment(maxTrialCount=2),
        lambda launch: FakeOutcome(["training...", "accuracy=0.9", "done"]),
    )
    trials = sqlite_store.list_trials("exp")
    assert {t.condition for t in trials} == {TrialCondition.METRICS_UNAVAILABLE}
    message = trials[0].message
    assert "loss" in message and "done" in message
    assert condition(sqlite_store) == ("Succeeded", "ExperimentMaxTrialsReached")


def test_suggestion_end_reached(sqlite_store: Store, tmp_path: Path) -> None:
    run(
        sqlite_store,
        tmp_path,
        experiment(maxTrialCount=10),
        loss_lines,
        servicer=Scripted(limit=3),
    )
    assert condition(sqlite_store) == ("Succeeded", "ExperimentSuggestionEndReached")
    assert len(sqlite_store.list_trials("exp")) == 3


def test_invalid_settings_fail_the_experiment(sqlite_store: Store, tmp_path: Path) -> None:
    with pytest.raises(ReconcileError, match="unknown setting foo"):
        run(
            sqlite_store,
            tmp_path,
            experiment(),
            loss_lines,
            servicer=Scripted(invalid="unknown setting foo for algorithm scripted"),
        )
    assert condition(sqlite_store) == ("Failed", "ExperimentFailed")
    assert "ValidateAlgorithmSettings Error: unknown setting foo" in str(status_of(sqlite_store))


def test_early_stopping_marks_trials_and_stops_them(sqlite_store: Store, tmp_path: Path) -> None:
    def stop_when_high(observations: list[Observation]) -> StopDecision:
        high = any(o.numeric is not None and o.numeric > 100 for o in observations)
        return StopDecision(high, message="loss above 100" if high else "")

    def outcome(launch: TrialLaunch) -> FakeOutcome:
        x = x_of(launch)
        return FakeOutcome([f"loss={x * 60}", "loss=1"], duration=0.5 if x >= 2 else 0)

    _, runner = run(
        sqlite_store,
        tmp_path,
        experiment(maxTrialCount=4),
        outcome,
        stopper=lambda: stop_when_high,
    )
    trials = {x: t for t in sqlite_store.list_trials("exp") for x in [int(t.assignment["x"])]}
    assert trials[0].condition is TrialCondition.SUCCEEDED
    assert trials[2].condition is TrialCondition.EARLY_STOPPED
    assert trials[2].message == "loss above 100"
    assert trials[2].completion_time is not None
    assert trials[2].name in runner.stopped
    assert {m["name"] for m in trials[2].observation["metrics"]} == {"loss"}


class SlowStoppingRunner(FakeRunner):
    """A runner whose jobs take a while to end once told to stop (a grace period)."""

    def stop(self, handle: dict[str, Any], grace_seconds: float = 10.0) -> None:
        time.sleep(0.5)
        super().stop(handle, grace_seconds)


def test_experiment_ends_only_after_early_stopped_jobs_ended(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """The last trial is early stopped while its job still runs: the experiment's end waits
    for that job, so the trial gets its completion time and its metrics."""

    def stop_at_once(observations: list[Observation]) -> StopDecision:
        return StopDecision(bool(observations), message="enough")

    _, runner = run(
        sqlite_store,
        tmp_path,
        experiment(maxTrialCount=1, parallelTrialCount=1),
        lambda launch: FakeOutcome(["loss=3"], duration=60),
        stopper=lambda: stop_at_once,
        runner_type=SlowStoppingRunner,
    )
    (trial,) = sqlite_store.list_trials("exp")
    assert trial.condition is TrialCondition.EARLY_STOPPED
    assert trial.completion_time is not None
    assert trial.name in runner.stopped
    assert [m["latest"] for m in trial.observation["metrics"]] == ["3"]
    assert condition(sqlite_store)[0] == "Succeeded"


def test_gpu_trials_wait_for_free_devices(sqlite_store: Store, tmp_path: Path) -> None:
    starts: list[tuple[float, str]] = []

    def outcome(launch: TrialLaunch) -> FakeOutcome:
        starts.append((time.monotonic(), launch.gpus[0]))
        return FakeOutcome(["loss=1"], duration=0.2)

    run(sqlite_store, tmp_path, experiment(gpus=1, parallelTrialCount=3), outcome, gpus=2)
    assert len(starts) == 6
    assert {gpu for _, gpu in starts} == {"0", "1"}
    for device in ("0", "1"):  # a device is handed out again only after its trial ended
        times = sorted(t for t, gpu in starts if gpu == device)
        assert all(b - a >= 0.2 for a, b in itertools.pairwise(times))


def test_gpu_request_larger_than_machine_fails_clearly(
    sqlite_store: Store, tmp_path: Path
) -> None:
    with pytest.raises(ReconcileError, match=r"asks for 4 GPU\(s\).*has 2"):
        run(sqlite_store, tmp_path, experiment(gpus=4), loss_lines, gpus=2)
    assert condition(sqlite_store) == ("Failed", "ExperimentFailed")


class Staged(Scripted):
    """Proposes x in rungs of ``rung`` trials; the next rung waits (FAILED_PRECONDITION, as
    hyperband does) until every trial so far has finished."""

    def __init__(self, rung: int, limit: int, never_ready: bool = False) -> None:
        super().__init__(limit)
        self.rung = rung
        self.never_ready = never_ready
        self.waits = 0

    def GetSuggestions(self, request, context):
        pending = [
            t
            for t in request.trials
            if t.status.condition in (api_pb2.TrialStatus.CREATED, api_pb2.TrialStatus.RUNNING)
        ]
        in_rung = len(request.trials) % self.rung
        room = self.rung - in_rung if in_rung or not pending else 0
        if self.never_ready or request.current_request_number > room:
            self.waits += 1
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the next rung waits")
        return super().GetSuggestions(request, context)


def test_a_staged_algorithm_is_asked_again_when_trials_finish(
    sqlite_store: Store, tmp_path: Path
) -> None:
    servicer = Staged(rung=3, limit=6)
    run(
        sqlite_store,
        tmp_path,
        experiment(maxTrialCount=10, parallelTrialCount=4),
        loss_lines,
        servicer=servicer,
    )
    assert condition(sqlite_store) == ("Succeeded", "ExperimentSuggestionEndReached")
    assert len(sqlite_store.list_trials("exp")) == 6
    assert servicer.waits > 0


def test_waiting_with_nothing_running_fails_the_experiment(
    sqlite_store: Store, tmp_path: Path
) -> None:
    with pytest.raises(ReconcileError, match="the next rung waits"):
        run(
            sqlite_store,
            tmp_path,
            experiment(maxTrialCount=4),
            loss_lines,
            servicer=Staged(rung=3, limit=6, never_ready=True),
        )
    assert condition(sqlite_store) == ("Failed", "ExperimentFailed")
