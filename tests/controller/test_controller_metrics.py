"""Katib's counters from the reconciler (once per transition, never per poll) and ``tunery run
--metrics-port`` scraped over HTTP while its trials run."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from controller.clients import InProcessSuggestionClient
from controller.collecting import LogWatcher
from controller.gpus import GpuAllocator
from controller.local import submit
from controller.metrics import ControllerMetrics, StoreGauges, store_gauges
from controller.reconcile import Reconciler
from controller.runners.base import TrialLaunch
from controller.runners.fake import FakeOutcome, FakeRunner
from tests.controller.test_reconcile import Scripted, experiment, x_of
from tunery.store.base import Store

ROOT = Path(__file__).resolve().parents[2]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def mixed(launch: TrialLaunch) -> FakeOutcome:
    """x % 3: 0 fails, 1 reports no objective (MetricsUnavailable), 2 succeeds; each takes a
    few polls."""
    x = x_of(launch)
    if x % 3 == 0:
        return FakeOutcome(["Traceback: boom"], exit_code=1, duration=0.05)
    if x % 3 == 1:
        return FakeOutcome(["accuracy=0.5"], duration=0.05)
    return FakeOutcome([f"loss={x}"], duration=0.05)


def test_each_transition_is_counted_once_not_per_pass(sqlite_store: Store, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    doc = experiment(maxTrialCount=6, parallelTrialCount=2, maxFailedTrialCount=6)
    submit(sqlite_store, doc, tmp_path)
    reconciler = Reconciler(
        sqlite_store,
        "exp",
        runner=FakeRunner(mixed),
        suggestions=InProcessSuggestionClient(Scripted()),
        watcher_factory=LogWatcher.factory(sqlite_store, doc),
        allocator=GpuAllocator([]),
        base_dir=tmp_path,
        logs_dir=tmp_path / "logs",
        metrics=metrics,
    )
    reconciler.validate()
    steps = 0
    seen_created: list[float] = []
    while True:
        steps += 1
        done = reconciler.step().done
        seen_created.append(value(registry, "katib_trial_created_total", namespace="default"))
        if done:
            break
        assert steps < 500, "experiment did not complete"
        time.sleep(0.01)
    for _ in range(5):  # passes after the end change nothing
        reconciler.step()
        steps += 1
    reconciler.close()

    assert steps > 12  # many passes: a per-poll count would show
    assert seen_created == sorted(seen_created) and seen_created[0] < 6  # grew as trials ran
    ns = {"namespace": "default"}
    assert value(registry, "katib_trial_created_total", **ns) == 6
    assert value(registry, "katib_trial_failed_total", **ns) == 2
    assert value(registry, "katib_trial_metrics_unavailable_total", **ns) == 2
    assert value(registry, "katib_trial_succeeded_total", **ns) == 2
    assert value(registry, "katib_experiment_succeeded_total", **ns) == 1
    assert value(registry, "katib_experiment_failed_total", **ns) == 0
    assert value(registry, "tunery_reconcile_duration_seconds_count", **ns) == steps
    calls = value(registry, "tunery_get_suggestions_duration_seconds_count", algorithm="scripted")
    assert 3 <= calls <= 6  # one per batch of new trials

    # the current gauges read the store: 6 trials by condition, one Succeeded experiment
    gauges = CollectorRegistry()
    gauges.register(store_gauges(sqlite_store))
    assert value(gauges, "katib_experiments_current", namespace="default", status="Succeeded") == 1
    for status, count in (("Succeeded", 2), ("Failed", 2), ("MetricsUnavailable", 2)):
        assert value(gauges, "katib_trials_current", namespace="default", status=status) == count


def test_killed_trials_and_a_failed_experiment_are_counted(
    sqlite_store: Store, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    doc = experiment(maxTrialCount=10, parallelTrialCount=3, maxFailedTrialCount=0)

    def outcome(launch: TrialLaunch) -> FakeOutcome:  # x=0 fails at once, the others run long
        return (
            FakeOutcome(["boom"], exit_code=1)
            if x_of(launch) == 0
            else FakeOutcome(["loss=1"], duration=30)
        )

    submit(sqlite_store, doc, tmp_path)
    reconciler = Reconciler(
        sqlite_store, "exp", runner=FakeRunner(outcome),
        suggestions=InProcessSuggestionClient(Scripted()),
        watcher_factory=LogWatcher.factory(sqlite_store, doc), allocator=GpuAllocator([]),
        base_dir=tmp_path, logs_dir=tmp_path / "logs", metrics=ControllerMetrics(registry),
        stop_grace_seconds=0.1,
    )  # fmt: skip
    for _ in range(200):
        if reconciler.step().done:
            break
        time.sleep(0.01)
    reconciler.step()
    reconciler.close()
    ns = {"namespace": "default"}
    assert value(registry, "katib_experiment_failed_total", **ns) == 1
    assert value(registry, "katib_trial_failed_total", **ns) == 1
    assert value(registry, "tunery_trial_killed_total", **ns) == 2


def test_gauges_survive_an_unreadable_store() -> None:
    def broken() -> list:
        raise OSError("database down")

    registry = CollectorRegistry()
    registry.register(StoreGauges(broken))
    assert registry.get_sample_value("katib_experiments_current", {}) is None  # no error


EXPERIMENT = """
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: scraped}
spec:
  objective: {type: minimize, objectiveMetricName: loss}
  algorithm: {algorithmName: random}
  parallelTrialCount: 1
  maxTrialCount: 5
  parameters:
    - {name: x, parameterType: int, feasibleSpace: {min: "0", max: "50"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters: [{name: x, reference: x}]
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                command: [PYTHON, -c, SCRIPT, "${trialParameters.x}"]
""".replace("PYTHON", sys.executable).replace(
    "SCRIPT", "\"import sys, time; time.sleep(0.4); print(f'loss={int(sys.argv[1])}')\""
)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_tunery_run_serves_metrics_that_move_as_trials_run(tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    run = subprocess.Popen(
        [sys.executable, "-m", "tunery.cli", "run", "exp.yaml", "--metrics-port", "0",
         "-o", "json", "--db", f"sqlite:///{tmp_path}/t.db"],
        cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert run.stderr is not None
    url = None
    deadline = time.monotonic() + 30
    while url is None and time.monotonic() < deadline:
        line = run.stderr.readline()
        if match := re.search(r"metrics on (http://\S+)", line):
            url = match.group(1)
    assert url, "tunery run did not say where its metrics are"
    succeeded: list[float] = []
    running: list[float] = []
    ns = (("namespace", "default"),)
    while run.poll() is None:
        try:
            samples = scrape(url)
        except OSError:
            break  # the run ended between poll() and the request
        succeeded.append(samples.get(("katib_trial_succeeded_total", ns), 0.0))
        running.append(samples.get(("katib_trials_current", (*ns, ("status", "Running"))), 0.0))
        created = samples.get(("katib_trial_created_total", ns), 0.0)
        assert succeeded[-1] <= created <= 5
        time.sleep(0.1)
    run.stderr.read()
    assert run.wait(timeout=30) == 0
    assert succeeded == sorted(succeeded), succeeded
    assert len(set(succeeded)) >= 3, succeeded  # seen moving, trial by trial
    assert max(running) == 1  # parallelTrialCount 1, read from the store at scrape time
