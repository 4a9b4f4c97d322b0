"""Katib's Argo Workflow, Tekton PipelineRun, MPIJob and XGBoostJob examples under ``tunery
operator`` as its own process (real kopf, real watches) on the fake API server.

The test plays each workload's controller: it waits for the object the operator creates,
pushes the trial's metrics through the DBManager (as the collector would) and writes the status
the example's conditions read — Argo on the object itself (its CRD has no status subresource),
the others on the status subresource. The experiment must end Succeeded with every trial
counted. The example files are those of ``test_trial_kinds.py``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_stack import Stack, wait_for
from kubernetes import client as k8s_client

pytestmark = pytest.mark.slow

KINDS = Path(__file__).resolve().parent / "trial_kinds"
V1B1 = ("kubeflow.org", "v1beta1")
SUCCEEDED_CONDITIONS = [
    {"type": "Created", "status": "True", "reason": "Created"},
    {"type": "Succeeded", "status": "True", "reason": "Succeeded"},
]
WORKLOADS = {
    # example: (group, version, plural, status subresource?, status that succeeds)
    "argo-workflow": ("argoproj.io", "v1alpha1", "workflows", False, {"phase": "Succeeded"}),
    "tekton-pipeline-run": (
        "tekton.dev", "v1beta1", "pipelineruns", True,
        {"conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}]},
    ),
    "mpijob-horovod": (
        "kubeflow.org", "v1", "mpijobs", True, {"conditions": SUCCEEDED_CONDITIONS}
    ),
    "xgboostjob-lightgbm": (
        "kubeflow.org", "v1", "xgboostjobs", True, {"conditions": SUCCEEDED_CONDITIONS}
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("kinds"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def _play(
    stack: Stack, namespace: str, example: str, stop: threading.Event, seen: list[str]
) -> None:
    """The workload's controller: every new object finishes, its metrics pushed first."""
    group, version, plural, sub, status = WORKLOADS[example]
    crs = k8s_client.CustomObjectsApi(stack.api_client())
    while not stop.wait(0.1):
        for obj in crs.list_namespaced_custom_object(group, version, namespace, plural)["items"]:
            name = obj["metadata"]["name"]
            if name in seen or obj["metadata"].get("deletionTimestamp"):
                continue
            seen.append(name)
            stack.report_metrics(name, {"loss": 0.1 * len(seen), "valid_1 auc": 0.5})
            patch = crs.patch_namespaced_custom_object_status if sub else (
                crs.patch_namespaced_custom_object
            )  # fmt: skip
            patch(group, version, namespace, plural, name, {"status": status})


@pytest.mark.parametrize("example", sorted(WORKLOADS))
def test_katib_example_of_each_kind_succeeds_under_kopf(stack: Stack, example: str) -> None:
    namespace = f"kinds-{uuid.uuid4().hex[:6]}"
    core = k8s_client.CoreV1Api(stack.api_client())
    core.create_namespace(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    document = yaml.safe_load((KINDS / f"{example}.yaml").read_text())
    document["metadata"]["namespace"] = namespace
    document["spec"].update(maxTrialCount=2, parallelTrialCount=1, maxFailedTrialCount=1)
    name = document["metadata"]["name"]
    crs = k8s_client.CustomObjectsApi(stack.api_client())
    crs.create_namespaced_custom_object(*V1B1, namespace, "experiments", document)
    stop, seen = threading.Event(), []
    player = threading.Thread(target=_play, args=(stack, namespace, example, stop, seen))
    player.start()
    try:

        def finished() -> dict[str, Any] | None:
            body = crs.get_namespaced_custom_object(*V1B1, namespace, "experiments", name)
            types = {c["type"] for c in body.get("status", {}).get("conditions", [])}
            return body if types & {"Succeeded", "Failed"} else None

        body = wait_for(f"{example} to finish", finished, 60, stack=stack)
    finally:
        stop.set()
        player.join(10)
    last = body["status"]["conditions"][-1]
    assert (last["type"], last["reason"]) == ("Succeeded", "ExperimentMaxTrialsReached"), last
    assert body["status"]["trialsSucceeded"] == 2 and len(seen) == 2
