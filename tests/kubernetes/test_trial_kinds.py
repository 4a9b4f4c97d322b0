"""Katib's example Experiments for the MPIJob, XGBoostJob, Argo Workflow and Tekton PipelineRun
trial kinds (issue 16, point 9): rendered, then run through the operator on the fake API server.

The fixtures in ``trial_kinds/`` have the shape of Katib's examples (same kinds, labels,
containers and conditions; argument lists shortened). Rendering checks the collector lands in
the primary unit only, the command is wrapped or the log followed, and the labels; the pods the
engine would build from the unit validate against the Kubernetes schema. Running plays the
workload's controller: the test writes the status the example's conditions read. Where Katib's
repository is mirrored (``/work/.mirror/kubeflow+katib``), its files are rendered too.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from test_operator import condition_types, get, make_operator, step
from trial_render import render_example

from controller import gjson
from controller.collector_check import kind_problems
from controller.sidecar import (
    EXPERIMENT_LABEL,
    METRICS_VOLUME,
    TOKEN_DIRECTORY,
    TOKEN_VOLUME,
    TRIAL_LABEL,
    WRAPPER,
)
from tunery.experiment import ExperimentError, load_experiment
from tunery.trials import Observation

HERE = Path(__file__).resolve().parent
KINDS = HERE / "trial_kinds"
VERSION = kubernetes_validate.latest_version()
COLLECTOR = "metrics-logger-and-collector"
KATIB = Path("/work/.mirror/kubeflow+katib/repo")


def _args(container: dict[str, Any]) -> list[str]:
    return [str(a) for a in container.get("args") or []]


def _flag(container: dict[str, Any], flag: str) -> str:
    args = _args(container)
    return args[args.index(flag) + 1]


def _validate_pod(spec: dict[str, Any], labels: dict[str, str]) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": labels},
        "spec": spec,
    }
    kubernetes_validate.validate(pod, VERSION, strict=True)


# -- rendering ---------------------------------------------------------------------------------


def test_mpijob_collector_goes_to_the_launcher_chosen_by_mpi_job_role() -> None:
    _, job = render_example(KINDS / "mpijob-horovod.yaml")
    replicas = job["spec"]["mpiReplicaSpecs"]
    launcher, worker = replicas["Launcher"]["template"], replicas["Worker"]["template"]
    (collector,) = launcher["spec"]["initContainers"]
    assert collector["name"] == COLLECTOR and collector["restartPolicy"] == "Always"
    (main,) = launcher["spec"]["containers"]
    assert main["command"][:4] == ["sh", "-c", WRAPPER, "tunery-trial"]
    assert main["command"][4:7] == ["mpirun", "-np", "2"] and "args" not in main
    assert "--lr" in main["command"] and "0.001" in main["command"]
    assert launcher["spec"]["shareProcessNamespace"] is True
    assert (
        "initContainers" not in worker["spec"] and "command" not in worker["spec"]["containers"][0]
    )
    for template in (launcher, worker):  # every pod is labelled with its trial
        assert template["metadata"]["labels"][TRIAL_LABEL] == "mpijob-horovod-abcd1234"
    _validate_pod(launcher["spec"], launcher["metadata"]["labels"])


def test_xgboostjob_without_command_follows_the_masters_log() -> None:
    _, job = render_example(KINDS / "xgboostjob-lightgbm.yaml")
    replicas = job["spec"]["xgbReplicaSpecs"]
    master, worker = replicas["Master"]["template"], replicas["Worker"]["template"]
    (main,) = master["spec"]["containers"]
    assert "command" not in main  # the image's entrypoint still runs, with its args
    assert main["args"][2] == "--learning_rate=0.01"
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["KATIB_TRIAL_NAME"] == "xgboostjob-lightgbm-abcd1234"
    assert "TUNERY_METRICS_FILE" not in env and "volumeMounts" not in main
    (collector,) = master["spec"]["initContainers"]
    assert _flag(collector, "--follow-container") == "xgboost"
    assert _flag(collector, "-f") == r"(\w+\s\w+)\s:\s((-?\d+)(\.\d+)?)"
    assert "-stop-rule" not in _args(collector)
    fields = {e["name"]: e.get("valueFrom") for e in collector["env"]}
    assert fields["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert fields["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # the token is projected into the collector only
    assert collector["volumeMounts"] == [
        {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIRECTORY, "readOnly": True}
    ]
    (volume,) = master["spec"]["volumes"]
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert "shareProcessNamespace" not in master["spec"]
    assert "initContainers" not in worker["spec"]
    _validate_pod(master["spec"], master["metadata"]["labels"])


def test_argo_workflow_collector_goes_to_the_labelled_template() -> None:
    _, job = render_example(KINDS / "argo-workflow.yaml")
    steps, gen, training = job["spec"]["templates"]
    trial = "katib-argo-workflow-abcd1234"
    for template in (gen, training):  # Argo labels each pod with its template's labels
        assert template["metadata"]["labels"][TRIAL_LABEL] == trial
        assert template["metadata"]["labels"][EXPERIMENT_LABEL] == "katib-argo-workflow"
    assert "metadata" not in steps  # a steps template runs no pod
    assert "sidecars" not in gen and gen["script"]["command"] == ["python"]
    main = training["container"]
    assert main["command"][:4] == ["sh", "-c", WRAPPER, "tunery-trial"]
    assert main["command"][4:] == [
        "python3", "/opt/pytorch-mnist/mnist.py", "--lr=0.01",
        "--epochs={{inputs.parameters.epochs}}", "--batch-size=16",
    ]  # fmt: skip
    (collector,) = training["sidecars"]  # Argo stops template sidecars when main ends
    assert collector["name"] == COLLECTOR and "restartPolicy" not in collector
    assert "--marks-only" not in _args(collector)
    assert json.loads(training["podSpecPatch"]) == {"shareProcessNamespace": True}
    assert training["volumes"] == [{"name": METRICS_VOLUME, "emptyDir": {}}]
    # the pod Argo builds: main (the container, renamed) beside the sidecar
    pod = {"containers": [{**main, "name": "main"}, collector], "volumes": training["volumes"],
           "shareProcessNamespace": True, "restartPolicy": "Never"}  # fmt: skip
    _validate_pod(pod, training["metadata"]["labels"])


def test_argo_pod_spec_patch_keeps_what_the_template_had() -> None:
    document = yaml.safe_load((KINDS / "argo-workflow.yaml").read_text())
    training = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["templates"][2]
    training["podSpecPatch"] = "terminationGracePeriodSeconds: 5\n"
    path = KINDS.parent / "trial_kinds" / "argo-workflow.yaml"
    _, job = _render_document(document, path)
    patch = json.loads(job["spec"]["templates"][2]["podSpecPatch"])
    assert patch == {"shareProcessNamespace": True, "terminationGracePeriodSeconds": 5}


def _render_document(
    document: dict[str, Any], near: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    tmp = near.parent / f".{near.stem}-variant.yaml"
    tmp.write_text(yaml.safe_dump(document))
    try:
        return render_example(tmp)
    finally:
        tmp.unlink()


def test_tekton_collector_goes_to_the_task_and_ends_on_marks() -> None:
    _, job = render_example(KINDS / "tekton-pipeline-run.yaml")
    assert job["spec"]["params"][0] == {"name": "lr", "value": "0.01"}
    pre, training = job["spec"]["pipelineSpec"]["tasks"]
    trial = "tekton-pipeline-run-abcd1234"
    for task in (pre, training):  # embedded task metadata reaches the TaskRun's pod
        assert task["taskSpec"]["metadata"]["labels"][TRIAL_LABEL] == trial
    assert "sidecars" not in pre["taskSpec"]
    assert pre["taskSpec"]["steps"][0]["command"] == ["sh", "-c"]  # not the primary: untouched
    task = training["taskSpec"]
    (step_,) = task["steps"]
    assert step_["command"][:4] == ["sh", "-c", WRAPPER, "tunery-trial"]
    assert "$(" not in WRAPPER  # Tekton and the kubelet would substitute it
    (collector,) = task["sidecars"]
    assert collector["name"] == COLLECTOR
    assert "--marks-only" in _args(collector)  # no shared process namespace in Tekton pods
    assert task["volumes"] == [{"name": METRICS_VOLUME, "emptyDir": {}}]
    pod = {"containers": [{**step_, "name": "step-model-training"},
                          {**collector, "name": f"sidecar-{COLLECTOR}"}],
           "volumes": task["volumes"], "restartPolicy": "Never"}  # fmt: skip
    _validate_pod(pod, task["metadata"]["labels"])


def test_a_primary_container_name_that_is_not_the_pods_is_named() -> None:
    document = yaml.safe_load((KINDS / "tekton-pipeline-run.yaml").read_text())
    document["spec"]["trialTemplate"]["primaryContainerName"] = "model-training"
    with pytest.raises(Exception, match="step-model-training"):
        _render_document(document, KINDS / "tekton-pipeline-run.yaml")


# -- conditions on realistic status objects ------------------------------------------------------

ARGO_SUCCEEDED = {
    "phase": "Succeeded", "progress": "2/2",
    "startedAt": "2026-01-02T03:04:05Z", "finishedAt": "2026-01-02T03:09:05Z",
    "nodes": {"wf-1": {"id": "wf-1", "phase": "Succeeded", "type": "Steps"}},
}  # fmt: skip
ARGO_FAILED = {**ARGO_SUCCEEDED, "phase": "Failed", "message": "child 'wf-2' failed"}
ARGO_RUNNING = {"phase": "Running", "startedAt": "2026-01-02T03:04:05Z", "progress": "1/2"}


def _tekton(status: str, reason: str) -> dict[str, Any]:
    return {
        "startTime": "2026-01-02T03:04:05Z",
        "conditions": [{"type": "Succeeded", "status": status, "reason": reason,
                        "message": "Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0",
                        "lastTransitionTime": "2026-01-02T03:09:05Z"}],
        "pipelineSpec": {"tasks": [{"name": "model-training"}]},
    }  # fmt: skip


def _mpi(kind: str) -> dict[str, Any]:
    return {
        "conditions": [
            {"type": "Created", "status": "True", "reason": "MPIJobCreated"},
            {"type": "Running", "status": "False", "reason": "MPIJobRunning"},
            {"type": kind, "status": "True", "reason": f"MPIJob{kind}"},
        ],
        "replicaStatuses": {"Launcher": {"succeeded": 1}, "Worker": {}},
    }


@pytest.mark.parametrize(
    ("example", "status", "outcome"),
    [
        ("argo-workflow", ARGO_SUCCEEDED, "success"),
        ("argo-workflow", ARGO_FAILED, "failure"),
        ("argo-workflow", ARGO_RUNNING, None),
        ("tekton-pipeline-run", _tekton("True", "Succeeded"), "success"),
        ("tekton-pipeline-run", _tekton("False", "Failed"), "failure"),
        ("tekton-pipeline-run", _tekton("Unknown", "Running"), None),
        ("mpijob-horovod", _mpi("Succeeded"), "success"),
        ("mpijob-horovod", _mpi("Failed"), "failure"),
    ],
)
def test_example_conditions_on_realistic_status(
    example: str, status: dict[str, Any], outcome: str | None
) -> None:
    document = load_experiment(yaml.safe_load((KINDS / f"{example}.yaml").read_text()))
    template = document.to_document()["spec"]["trialTemplate"]
    obj = {"apiVersion": "x/v1", "kind": "X", "status": status}
    failed = gjson.condition_match(obj, template["failureCondition"]) is not None
    succeeded = gjson.condition_match(obj, template["successCondition"]) is not None
    assert (failed, succeeded) == (outcome == "failure", outcome == "success")


# -- admission ---------------------------------------------------------------------------------


def _with_early_stopping(example: str) -> dict[str, Any]:
    document = yaml.safe_load((KINDS / f"{example}.yaml").read_text())
    document["spec"]["earlyStopping"] = {"algorithmName": "medianstop"}
    return load_experiment(document).to_document()


@pytest.mark.parametrize(
    ("example", "named"),
    [
        ("tekton-pipeline-run", "tekton.dev/v1beta1 PipelineRun"),
        ("xgboostjob-lightgbm", "kubeflow.org/v1 XGBoostJob"),
    ],
)
def test_early_stopping_is_refused_where_the_collector_cannot_stop(
    example: str, named: str
) -> None:
    (problem,) = kind_problems(_with_early_stopping(example))
    assert problem.path == "spec.earlyStopping" and named in problem.message


@pytest.mark.parametrize("example", ["argo-workflow", "mpijob-horovod"])
def test_early_stopping_is_accepted_where_the_collector_can_stop(example: str) -> None:
    assert kind_problems(_with_early_stopping(example)) == []


def test_katib_tekton_example_as_published_is_refused_like_katib_does() -> None:
    """Katib's tekton/pipeline-run.yaml declares learningRate but never uses
    ${trialParameters.learningRate} (its PipelineRun param says ``reference: lr``); Katib's
    validator refuses that too."""
    document = yaml.safe_load((KINDS / "tekton-pipeline-run.yaml").read_text())
    params = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["params"]
    params[0] = {"name": "learningRate", "description": "Learning rate", "reference": "lr"}
    with pytest.raises(ExperimentError, match=r"trialParameters\[0\].name.*learningRate"):
        load_experiment(document)


# -- through the operator ----------------------------------------------------------------------

RUNS = {
    # example: (apiVersion, kind, status subresource?, status that succeeds)
    "mpijob-horovod": ("kubeflow.org/v1", "MPIJob", True, _mpi("Succeeded")),
    "xgboostjob-lightgbm": ("kubeflow.org/v1", "XGBoostJob", True, _mpi("Succeeded")),
    "argo-workflow": ("argoproj.io/v1alpha1", "Workflow", False, ARGO_SUCCEEDED),
    "tekton-pipeline-run": (
        "tekton.dev/v1beta1",
        "PipelineRun",
        True,
        _tekton("True", "Succeeded"),
    ),
}


def _submit(api: Any, namespace: str, example: str, **spec: Any) -> str:
    document = yaml.safe_load((KINDS / f"{example}.yaml").read_text())
    document["metadata"]["namespace"] = namespace
    document["spec"].update(spec)
    api.create(document)
    return str(document["metadata"]["name"])


def _play(
    api: Any, namespace: str, obj: dict[str, Any], status: dict[str, Any], sub: bool
) -> None:
    """The workload's controller writes its status (Argo without a status subresource)."""
    api.patch(obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"],
              {"status": status}, subresource="status" if sub else None)  # fmt: skip


@pytest.mark.parametrize("example", sorted(RUNS))
def test_example_runs_through_the_operator(example, api, namespace, k8s_store, suggestions):
    api_version, kind, sub, succeeded = RUNS[example]
    name = _submit(api, namespace, example)
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace, name)
    (obj,) = api.list(api_version, kind, namespace)
    trial = obj["metadata"]["name"]
    assert obj["metadata"]["labels"][TRIAL_LABEL] == trial
    assert obj["metadata"]["ownerReferences"][0]["kind"] == "Trial"
    assert COLLECTOR in json.dumps(obj["spec"])  # the stored object carries the collector
    objective = get(api, "Experiment", namespace, name)["spec"]["objective"]
    metric = objective["objectiveMetricName"]
    k8s_store.in_namespace(namespace).add_observations(trial, [Observation.of(metric, 0.5, 0)])
    _play(api, namespace, obj, succeeded, sub)
    step(op, api, namespace, name)
    step(op, api, namespace, name)
    status = get(api, "Experiment", namespace, name)["status"]
    assert status["conditions"][-1]["reason"] == "ExperimentMaxTrialsReached", status
    assert status["currentOptimalTrial"]["bestTrialName"] == trial
    assert get(api, "Trial", namespace, trial)["status"]["conditions"][-1]["type"] == "Succeeded"


@pytest.mark.parametrize(
    ("example", "failed"),
    [("argo-workflow", ARGO_FAILED), ("tekton-pipeline-run", _tekton("False", "Failed"))],
)
def test_a_failed_workflow_fails_its_trial(
    example, failed, api, namespace, k8s_store, suggestions
):
    api_version, kind, sub, _ = RUNS[example]
    name = _submit(api, namespace, example)
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace, name)
    (obj,) = api.list(api_version, kind, namespace)
    _play(api, namespace, obj, failed, sub)
    step(op, api, namespace, name)
    step(op, api, namespace, name)
    trial = get(api, "Trial", namespace, obj["metadata"]["name"])
    assert trial["status"]["conditions"][-1]["type"] == "Failed"
    assert condition_types(get(api, "Experiment", namespace, name)["status"])[-1] == "Failed"


def test_the_operator_refuses_early_stopping_for_tekton(api, namespace, k8s_store, suggestions):
    name = _submit(
        api, namespace, "tekton-pipeline-run", earlyStopping={"algorithmName": "medianstop"}
    )
    step(make_operator(api, k8s_store, suggestions), api, namespace, name)
    status = get(api, "Experiment", namespace, name)["status"]
    assert condition_types(status) == ["Failed"]
    message = status["conditions"][-1]["message"]
    assert "spec.earlyStopping" in message and "PipelineRun" in message
    assert api.list("tekton.dev/v1beta1", "PipelineRun", namespace) == []


# -- Katib's own files, where its repository is mirrored ------------------------------------------

KATIB_FILES = {
    "kubeflow-training-operator/mpijob-horovod.yaml": ("mpiReplicaSpecs", "Launcher"),
    "kubeflow-training-operator/xgboostjob-lightgbm.yaml": ("xgbReplicaSpecs", "Master"),
    "argo/argo-workflow.yaml": None,
}


@pytest.mark.parametrize("name", sorted(KATIB_FILES))
def test_katib_example_file_renders(name: str, tmp_path: Path) -> None:
    if not KATIB.exists():
        pytest.skip("Katib's repository is not mirrored here")
    text = subprocess.run(
        ["git", "-C", str(KATIB), "show", f"HEAD:examples/v1beta1/{name}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    path = tmp_path / Path(name).name
    path.write_text(text)
    _, job = render_example(path)
    rendered = json.dumps(job)
    assert COLLECTOR in rendered and "${trialParameters." not in rendered
    where = KATIB_FILES[name]
    if where is not None:
        primary = job["spec"][where[0]][where[1]]["template"]["spec"]
        assert [c["name"] for c in primary["initContainers"]] == [COLLECTOR]


# -- RBAC --------------------------------------------------------------------------------------

ROOT = HERE.parents[1]


def _cluster_roles(name: str) -> dict[str, list[dict[str, Any]]]:
    docs = yaml.safe_load_all((ROOT / "deploy" / name).read_text())
    return {d["metadata"]["name"]: d["rules"] for d in docs if d and d["kind"] == "ClusterRole"}


def _verbs(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {
        v
        for r in rules
        if group in r["apiGroups"] and resource in r["resources"]
        for v in r["verbs"]
    }


@pytest.mark.parametrize(
    ("group", "resource"),
    [
        ("argoproj.io", "workflows"),
        ("tekton.dev", "pipelineruns"),
        ("kubeflow.org", "mpijobs"),
        ("kubeflow.org", "xgboostjobs"),
    ],
)
def test_the_operator_may_run_each_trial_kind_and_no_more(group: str, resource: str) -> None:
    rules = _cluster_roles("rbac.yaml")["tunery-operator"]
    assert _verbs(rules, group, resource) == {"get", "create", "delete"}
    assert _verbs(rules, "", "pods/log") == set()  # the collector reads logs, not the operator


def test_the_log_reader_role_grants_reading_pod_logs_only() -> None:
    (rules,) = _cluster_roles("trial-log-reader.yaml").values()
    granted = {(g, res, v) for r in rules for g in r["apiGroups"] for res in r["resources"]
               for v in r["verbs"]}  # fmt: skip
    assert granted == {("", "pods/log", "get"), ("", "pods", "get")}
    kustomization = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    assert "trial-log-reader.yaml" in kustomization["resources"]
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "trial-log-reader.yaml").read_text()))
    assert [d["kind"] for d in docs if d] == ["ClusterRole"]  # bound per namespace by an admin


@pytest.mark.parametrize("example", ["argo-workflow", "tekton-pipeline-run"])
def test_a_workflow_trial_stays_inside_the_operators_rbac(
    example, api, cluster, namespace, k8s_store, suggestions
):
    from test_operator_katib_parity import RecordingApi

    api_version, kind, sub, succeeded = RUNS[example]
    rec_api = RecordingApi(cluster.api_client())
    name = _submit(api, namespace, example, retain=False)
    op = make_operator(rec_api, k8s_store, suggestions)
    step(op, api, namespace, name)
    (obj,) = api.list(api_version, kind, namespace)
    k8s_store.in_namespace(namespace).add_observations(
        obj["metadata"]["name"], [Observation.of("loss", 0.5, 0)]
    )
    _play(api, namespace, obj, succeeded, sub)
    step(op, api, namespace, name)
    step(op, api, namespace, name)
    rules = _cluster_roles("rbac.yaml")["tunery-operator"]
    plural = api_version.split("/")[0], kind.lower() + "s"
    used = {(verb, resource) for verb, resource, _ in rec_api.calls if resource == plural[1]}
    assert ("create", plural[1]) in used
    assert all(verb in _verbs(rules, plural[0], plural[1]) for verb, _ in used), used


def test_an_argo_pod_spec_patch_that_cannot_be_merged_is_named() -> None:
    document = yaml.safe_load((KINDS / "argo-workflow.yaml").read_text())
    training = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["templates"][2]
    training["podSpecPatch"] = "containers: [{{inputs.parameters.x}}"
    with pytest.raises(Exception, match="Argo template 'model-training': podSpecPatch"):
        _render_document(document, KINDS / "argo-workflow.yaml")


def test_a_restricted_xgboost_master_stays_restricted_with_the_log_follower() -> None:
    from pod_security import restricted_violations

    document = yaml.safe_load((KINDS / "xgboostjob-lightgbm.yaml").read_text())
    master = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["xgbReplicaSpecs"]["Master"]
    pod = master["template"]["spec"]
    pod["securityContext"] = {"runAsNonRoot": True, "runAsUser": 1000,
                              "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip
    pod["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    _, job = _render_document(document, KINDS / "xgboostjob-lightgbm.yaml")
    rendered = job["spec"]["xgbReplicaSpecs"]["Master"]["template"]["spec"]
    assert "--follow-container" in _args(rendered["initContainers"][0])
    assert restricted_violations(rendered) == []


def test_early_stopping_is_refused_for_any_collector_when_nothing_wraps_the_trial() -> None:
    document = yaml.safe_load((KINDS / "xgboostjob-lightgbm.yaml").read_text())
    document["spec"]["earlyStopping"] = {"algorithmName": "medianstop"}
    document["spec"]["metricsCollectorSpec"] = {
        "collector": {"kind": "File"},
        "source": {"fileSystemPath": {"path": "/var/log/xgb/metrics.log", "kind": "File"}},
    }
    (problem,) = kind_problems(load_experiment(document).to_document())
    assert "nothing wraps it" in problem.message and "'xgboost'" in problem.message
