"""Katib's hyperparameter-tuning example Experiments, run to completion by ``tunery operator``.

Each example is a file in ``katib_examples/`` written in the shape of one of Katib's
``examples/v1beta1`` Experiments (its parameters, objective, metrics collector, algorithm and
early-stopping settings, trial template); when the Katib repository is mirrored here
(``KATIB_MIRROR``), :func:`test_katibs_own_example_runs` runs Katib's own files the same way.
Katib's examples run images this machine cannot pull, so the primary container's
``python3 /opt/.../mnist.py`` becomes ``python3 -c`` :data:`PROGRAM`, which takes the example's
``--name=value`` arguments and reports ``loss`` and ``accuracy`` per epoch the way Katib's
``mnist.py`` does: ``name=value`` lines on stdout, ``{metricName: ..., metricValue: ...}`` lines
in ``--log-path``, JSON lines there with ``--logger=hypertune``, or TensorFlow summaries (event
files, written with the ``tensorboard`` package) in ``<log-path>/test`` when ``--log-path`` is
a folder, as Katib's TFJob-with-summaries example does. Only the budget changes
(``maxTrialCount`` :data:`TRIALS` unless the example is smaller, ``parallelTrialCount`` at
most 2, ``maxFailedTrialCount`` at most ``maxTrialCount``).

Everything runs as processes (:class:`e2e_stack.Stack`: the fake API server, ``tunery
operator`` under kopf, the Suggestion, DBManager and EarlyStopping services), and the test's
kubelet runs each trial pod as rendered (:class:`e2e_stack.Kubelet` with ``collect``): the
collector sidecar tails what the program wrote and pushes it to the DBManager, so the metrics in
the store went through the operator's wrapper, Katib's collector flags and the example's
format. Each test asserts the Experiment Succeeded with its trial count, that every trial's
stored observations are what its parameters give, and that the optimal trial is the best one.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_stack import Kubelet, Stack, wait_for
from kubernetes import client as k8s_client

from tunery.store import open_store
from tunery.trials import TrialCondition

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent / "katib_examples"
KATIB_MIRROR = Path(os.environ.get("KATIB_MIRROR", "/work/.mirror/kubeflow+katib/repo"))
V1B1 = ("kubeflow.org", "v1beta1")
TRIALS = 2
TRAINING_KINDS = {
    "PyTorchJob": ("kubeflow.org", "v1", "pytorchjobs"),
    "TFJob": ("kubeflow.org", "v1", "tfjobs"),
}
"""Trial kinds the test's kubelet completes as the training operator would (the pod of the
master replica, else of the first: one of a TFJob's two workers)."""

PROGRAM = """\
import json, os, sys, time
a = dict(x[2:].split("=", 1) for x in sys.argv[1:] if x.startswith("--") and "=" in x)
base = float(a.get("lr") or a["learning-rate"]) + 0.01 * abs(float(a.get("momentum", 0)))
path, lines, summaries = a.get("log-path"), [], []
for epoch in range(1, int(a.get("epochs", 1)) + 1):
    loss = base * (1 + 1 / epoch)
    metrics = {"loss": f"{loss:.6f}", "accuracy": f"{1 - loss:.6f}"}
    if path and not os.path.splitext(path)[1]:  # a folder: TensorFlow summaries, test/
        summaries.append((epoch, metrics))
    elif path and a.get("logger") == "hypertune":
        lines.append(json.dumps({**metrics, "epoch": epoch, "timestamp": time.time()}))
    elif path:
        lines += ["{metricName: %s, metricValue: %s}" % kv for kv in metrics.items()]
    else:
        print(f"epoch {epoch}:", *(f"{k}={v}" for k, v in metrics.items()), flush=True)
if summaries:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    writer = EventFileWriter(os.path.join(path, "test"))
    for step, m in summaries:
        scalars = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in m.items()]
        summary = summary_pb2.Summary(value=scalars)
        writer.add_event(event_pb2.Event(step=step, wall_time=time.time(), summary=summary))
    writer.close()
elif path:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as out:
        out.write("".join(line + "\\n" for line in lines))
trial = {k: v for k, v in os.environ.items() if k.startswith("TRIAL_")}
if trial:
    print("trial metadata:", json.dumps(trial, sort_keys=True))
"""
"""The trial program: what Katib's ``mnist.py`` reports, from the example's arguments."""


def expected_metrics(assignment: dict[str, str]) -> dict[str, list[float]]:
    """What :data:`PROGRAM` reports per epoch for a trial's parameter values."""
    lr = float(assignment.get("lr") or assignment["learning_rate"])
    base = lr + 0.01 * abs(float(assignment.get("momentum", 0)))
    epochs = int(assignment.get("num-epochs") or assignment.get("epochs") or 1)
    losses = [float(f"{base * (1 + 1 / e):.6f}") for e in range(1, epochs + 1)]
    return {"loss": losses, "accuracy": [float(f"{1 - x:.6f}") for x in losses]}


def pod_specs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs of the trial template (a Job's, or each replica's)."""
    spec = document["spec"]["trialTemplate"]["trialSpec"]["spec"]
    if "template" in spec:
        return [spec["template"]["spec"]]
    replicas = next(v for k, v in spec.items() if k.endswith("ReplicaSpecs"))
    return [r["template"]["spec"] for r in replicas.values()]


def substitute(document: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The example as the test runs it: :data:`PROGRAM` for the image's script, the small
    budget, the test's namespace; nothing else changes."""
    document = copy.deepcopy(document)
    document["metadata"]["namespace"] = namespace
    primary = document["spec"]["trialTemplate"]["primaryContainerName"]
    for pod in pod_specs(document):
        for container in pod["containers"]:
            command = container.get("command") or []
            if container["name"] == primary and len(command) > 1 and command[1].endswith(".py"):
                container["command"] = ["python3", "-c", PROGRAM, *command[2:]]
    spec = document["spec"]
    spec["maxTrialCount"] = min(spec.get("maxTrialCount", TRIALS), TRIALS)
    spec["parallelTrialCount"] = min(spec.get("parallelTrialCount", 1), 2)
    if "maxFailedTrialCount" in spec:
        spec["maxFailedTrialCount"] = min(spec["maxFailedTrialCount"], spec["maxTrialCount"])
    return document


def best_of(objective: dict[str, Any], values: dict[str, float]) -> str:
    pick = min if objective["type"] == "minimize" else max
    return pick(values, key=lambda name: values[name])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("examples"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def run_example(stack: Stack, document: dict[str, Any], pods: Path) -> dict[str, Any]:
    """Create the example in a namespace of its own, run its trials and check the result;
    returns what the checks saw."""
    collector = (document["spec"].get("metricsCollectorSpec") or {}).get("collector") or {}
    if collector.get("kind") == "TensorFlowEvent":  # the trial writes summaries with it
        pytest.importorskip("tensorboard", reason="the tfevents extra is not installed")
    namespace = f"ex-{uuid.uuid4().hex[:6]}"
    core = k8s_client.CoreV1Api(stack.api_client())
    core.create_namespace(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    document = substitute(document, namespace)
    name, spec = document["metadata"]["name"], document["spec"]
    crs = k8s_client.CustomObjectsApi(stack.api_client())
    crs.create_namespaced_custom_object(*V1B1, namespace, "experiments", document)

    def finished() -> dict[str, Any] | None:
        body = crs.get_namespaced_custom_object(*V1B1, namespace, "experiments", name)
        types = {c["type"] for c in (body.get("status") or {}).get("conditions", [])}
        return body if types & {"Succeeded", "Failed"} else None

    kind = spec["trialTemplate"]["trialSpec"]["kind"]
    training = TRAINING_KINDS.get(kind)
    with Kubelet(
        stack, namespace, lambda _: {}, execute=pods, collect=True, training=training
    ) as kubelet:
        body = wait_for(f"{name} to finish", finished, 90, stack=stack)
        resumed = resume(stack, crs, namespace, document, body, kubelet)
    assert not kubelet.errors, kubelet.errors
    status = resumed or body["status"]
    last = status["conditions"][-1]
    assert (last["type"], last["reason"]) == ("Succeeded", "ExperimentMaxTrialsReached"), last
    count = spec["maxTrialCount"] + (1 if resumed else 0)
    assert status["trials"] == count, status
    assert status.get("trialsSucceeded", 0) + status.get("trialsEarlyStopped", 0) == count
    store = open_store(stack.db_url).in_namespace(namespace)
    try:
        trials = store.list_trials(name)
        assert len(trials) == count and len(kubelet.finished) == count
        objective = spec["objective"]
        metric = objective["objectiveMetricName"]
        finals = {}
        for trial in trials:
            want = expected_metrics(dict(trial.assignment))
            got = [float(o.value) for o in store.get_observations(trial.name, metric)]
            if trial.condition is TrialCondition.EARLY_STOPPED:
                assert got == pytest.approx(want[metric][: len(got)], rel=1e-6), trial.name
            else:
                assert trial.condition is TrialCondition.SUCCEEDED, trial
                assert got == pytest.approx(want[metric], rel=1e-6), (  # summaries: float32
                    trial.name,
                    got,
                    want,
                    kubelet.collector_outputs,
                )
            finals[trial.name] = got[-1]
        best = store.best_trial(name)
        assert best is not None and status["currentOptimalTrial"]["bestTrialName"] == best.name
        strategy = {s["name"]: s["value"] for s in objective.get("metricStrategies") or []}
        if strategy.get(metric, "latest") in ("latest", "min" if metric == "loss" else "max"):
            assert best.name == best_of(objective, finals), (finals, best.name)
    finally:
        store.close()
    return {"namespace": namespace, "kubelet": kubelet, "status": status, "trials": trials}


def resume(
    stack: Stack,
    crs: k8s_client.CustomObjectsApi,
    namespace: str,
    document: dict[str, Any],
    body: dict[str, Any],
    kubelet: Kubelet,
) -> dict[str, Any] | None:
    """Katib's resume examples: one more trial after Succeeded. LongRunning and FromVolume
    continue (the new status is returned); Never refuses with an event and stays as it was."""
    policy = document["spec"].get("resumePolicy")
    if policy is None:
        return None
    name, more = document["metadata"]["name"], document["spec"]["maxTrialCount"] + 1
    patch = {"spec": {"maxTrialCount": more}}
    crs.patch_namespaced_custom_object(*V1B1, namespace, "experiments", name, patch)
    if policy == "Never":
        core = k8s_client.CoreV1Api(stack.api_client())
        wait_for(
            "the restart refused",
            lambda: any(
                e.reason == "RestartRefused" for e in core.list_namespaced_event(namespace).items
            ),
            30,
            stack=stack,
        )
        time.sleep(1)  # a pass that would wrongly continue would have created a trial by now
        assert len(kubelet.seen) == document["spec"]["maxTrialCount"]
        return None

    def continued() -> dict[str, Any] | None:
        now = crs.get_namespaced_custom_object(*V1B1, namespace, "experiments", name)
        status = now.get("status") or {}
        types = [c["type"] for c in status.get("conditions", []) if c["status"] == "True"]
        return status if status.get("trials") == more and types[-1:] == ["Succeeded"] else None

    return wait_for(f"{name} to continue", continued, 60, stack=stack)


EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_katib_example_shape_runs_to_completion(
    stack: Stack, example: str, tmp_path: Path
) -> None:
    document = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    seen = run_example(stack, document, tmp_path / "pods")
    kubelet = seen["kubelet"]
    if example == "trial-metadata-substitution":
        for job, output in kubelet.outputs.items():
            line = next(x for x in output.splitlines() if x.startswith("trial metadata:"))
            assert json.loads(line.split(":", 1)[1]) == {
                "TRIAL_NAME": job,
                "TRIAL_NAMESPACE": seen["namespace"],
                "TRIAL_KIND": "Job",
                "TRIAL_API_VERSION": "batch/v1",
                "TRIAL_LABEL_CUSTOM": "custom-label",
                "TRIAL_ANNOTATION_CUSTOM": "custom-annotation",
            }


def katib_examples() -> list[str]:
    """Katib's own hp-tuning-shaped example files in the mirror (none without it)."""
    if not KATIB_MIRROR.exists():
        return []
    listed = subprocess.run(
        ["git", "--git-dir", str(KATIB_MIRROR), "ls-tree", "-r", "--name-only", "HEAD",
         "examples/v1beta1"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return sorted(p for p in listed if p.endswith(".yaml") and Path(p).stem in KATIB_RUNNABLE)


KATIB_RUNNABLE = {
    # Katib's file: the fixture of the same shape here
    "random", "grid", "bayesian-optimization", "tpe", "multivariate-tpe", "cma-es", "sobol",
    "hyperband", "hyperopt-distribution", "optuna-distribution", "metrics-collection-strategy",
    "median-stop", "median-stop-with-json-format", "file-metrics-collector",
    "file-metrics-collector-with-json-format", "trial-metadata-substitution",
    "long-running-resume", "from-volume-resume", "pytorchjob-mnist",
    "tfjob-mnist-with-summaries",
}  # fmt: skip


@pytest.mark.skipif(
    not KATIB_MIRROR.exists(),
    reason=f"no Katib mirror at {KATIB_MIRROR} (set KATIB_MIRROR); the fixtures in "
    "katib_examples/ run the same shapes",
)
@pytest.mark.parametrize("path", katib_examples() or ["(no mirror)"])
def test_katibs_own_example_runs(stack: Stack, path: str, tmp_path: Path) -> None:
    text = subprocess.run(
        ["git", "--git-dir", str(KATIB_MIRROR), "show", f"HEAD:{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    document = next(d for d in yaml.safe_load_all(text) if d and d.get("kind") == "Experiment")
    run_example(stack, document, tmp_path / "pods")
