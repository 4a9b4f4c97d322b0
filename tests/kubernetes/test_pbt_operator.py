"""pbt through the operator (fake API server, the real pbt algorithm in process): the
suggestion volume is claimed, every trial job mounts its own folder of it, and the next
generation's jobs copy their parent's folder before the trial starts."""

from __future__ import annotations

from typing import Any

from controller.clients import InProcessSuggestionClient
from controller.runners.kubernetes import KubeApi
from suggestion.algorithms.pbt import GENERATION_LABEL, PARENT_LABEL
from suggestion.service import SuggestionServicer
from tunery.store.base import Store

from .test_operator import experiment_body, jobs, make_operator, play_job, step
from .test_operator_katib_parity import RecordingApi, _allowed

PBT = {
    "algorithmName": "pbt",
    "algorithmSettings": [
        {"name": "suggestion_trial_dir", "value": "/ckpt"},
        {"name": "n_population", "value": "5"},
        {"name": "truncation_threshold", "value": "0.2"},
        {"name": "random_state", "value": "2"},
    ],
}


def pod(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


def copier(job: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in pod(job)["initContainers"] if c["name"] == "tunery-checkpoint"]
    return found


def test_pbt_generations_share_checkpoints_on_the_suggestion_volume(
    api: KubeApi, cluster: Any, namespace: str, k8s_store: Store
) -> None:
    body = experiment_body(
        namespace, "pbtx", algorithm=PBT, parallelTrialCount=5, maxTrialCount=10
    )
    api.create(body)
    servicer = SuggestionServicer()
    rec_api = RecordingApi(cluster.api_client())  # the operator's calls, checked against RBAC
    op = make_operator(rec_api, k8s_store, lambda _name: InProcessSuggestionClient(servicer))
    step(op, api, namespace, "pbtx")

    claim = api.get("v1", "PersistentVolumeClaim", namespace, "pbtx-pbt")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["ownerReferences"][0]["kind"] == "Experiment"

    first = jobs(api, namespace)
    assert len(first) == 5
    for job in first:
        name = job["metadata"]["name"]
        assert {
            "name": "suggestion-volume",
            "persistentVolumeClaim": {"claimName": "pbtx-pbt"},
        } in (pod(job)["volumes"])
        main = next(c for c in pod(job)["containers"] if c["name"] == "training-container")
        assert {"name": "suggestion-volume", "mountPath": "/ckpt", "subPath": f"pbtx/{name}"} in (
            main["volumeMounts"]
        )
        assert "cp " not in copier(job)["command"][2]  # generation 0 starts empty
        trial = k8s_store.in_namespace(namespace).get_trial(name)
        assert trial.labels[GENERATION_LABEL] == "0"

    for i, job in enumerate(first):
        play_job(api, k8s_store, job, loss=0.1 * (i + 1))
    step(op, api, namespace, "pbtx")
    step(op, api, namespace, "pbtx")

    second = [j for j in jobs(api, namespace) if j["metadata"]["name"] not in {
        f["metadata"]["name"] for f in first
    }]  # fmt: skip
    assert len(second) == 5
    parents = {f["metadata"]["name"] for f in first}
    for job in second:
        name = job["metadata"]["name"]
        trial = k8s_store.in_namespace(namespace).get_trial(name)
        assert trial.labels[GENERATION_LABEL] == "1"
        parent = trial.labels[PARENT_LABEL]
        assert parent in parents
        script = copier(job)["command"][2]
        assert f"cp -a /opt/tunery/data/pbtx/{parent}/. /opt/tunery/data/pbtx/{name}/" in script
        cr = api.get("kubeflow.org/v1beta1", "Trial", namespace, name)
        assert cr["metadata"]["labels"][PARENT_LABEL] == parent  # as Katib labels its Trials
    # ("list", "") is API discovery (/api/v1, to find the claim's resource), open to all
    used = {(verb, resource) for verb, resource, _ in rec_api.calls if resource}
    assert ("create", "persistentvolumeclaims") in used
    assert sorted(u for u in used if not _allowed(*u)) == []
