"""The operator end to end against the fake API server, through the real kubernetes client.

Experiment CR -> admit -> reconcile passes -> Trial CRs and Jobs -> the test plays the Job
controller (status Complete/Failed) and the collector sidecar (observations in the store) ->
the Experiment ends Succeeded with currentOptimalTrial, or Failed; plus an operator restart, a
spec change, metrics that never arrive, and deletion.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from controller.operator import ExperimentOperator, OperatorSettings
from controller.runners.kubernetes import KubeApi, KubeError
from controller.sidecar import TRIAL_LABEL, WRAPPER
from tunery.store.base import Store
from tunery.trials import Observation

ROOT = Path(__file__).resolve().parents[2]
V1B1 = "kubeflow.org/v1beta1"


def experiment_body(namespace: str, name: str = "quick", **spec: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples/quickstart/experiment.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": namespace}
    doc["spec"].update(parallelTrialCount=2, maxTrialCount=4, maxFailedTrialCount=2)
    doc["spec"].update(spec)
    return doc


def make_operator(
    api: KubeApi, store: Store, suggestions: Any, **settings: Any
) -> ExperimentOperator:
    return ExperimentOperator(
        api,
        store,
        OperatorSettings(collector_image="tunery:test", **settings),
        suggestion_factory=suggestions,
    )


def step(op: ExperimentOperator, api: KubeApi, namespace: str, name: str = "quick") -> None:
    op.reconcile(api.get(V1B1, "Experiment", namespace, name))


def jobs(api: KubeApi, namespace: str) -> list[dict[str, Any]]:
    return api.list("batch/v1", "Job", namespace)


def get(api: KubeApi, kind: str, namespace: str, name: str) -> dict[str, Any]:
    return api.get(V1B1 if kind != "Job" else "batch/v1", kind, namespace, name)


def play_job(
    api: KubeApi, store: Store, job: dict[str, Any], *, loss: float | None, failed: bool = False
) -> None:
    """What the collector sidecar and the Job controller would do for a finished trial."""
    name = job["metadata"]["name"]
    if loss is not None:
        now = dt.datetime.now(dt.UTC)
        store.in_namespace(job["metadata"]["namespace"]).add_observations(
            name,
            [
                Observation.of("loss", loss * 2, 0, now - dt.timedelta(seconds=2)),
                Observation.of("loss", loss, 1, now - dt.timedelta(seconds=1)),
                Observation.of("accuracy", 1 - loss, 1, now),
            ],
        )
    kind = "Failed" if failed else "Complete"
    condition = {
        "type": kind,
        "status": "True",
        "reason": "BackoffLimitExceeded" if failed else "",
        "message": "Job has reached the specified backoff limit" if failed else "",
    }
    api.patch(
        "batch/v1",
        "Job",
        job["metadata"]["namespace"],
        name,
        {"status": {"conditions": [condition]}},
        subresource="status",
    )


def loss_of(job: dict[str, Any]) -> float:
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    lr = next(a for a in command if a.startswith("--lr=")).split("=", 1)[1]
    return float(lr)  # the scripted algorithm's lr doubles as the trial's loss


def condition_types(status: dict[str, Any]) -> list[str]:
    return [c["type"] for c in status.get("conditions", []) if c["status"] == "True"]


def events(api: KubeApi, namespace: str) -> list[tuple[str, str, str]]:
    """The events in the order they were posted (a list is ordered by name, and event names
    are generated: the fake server's resourceVersions count writes)."""
    posted = sorted(
        api.list("v1", "Event", namespace), key=lambda e: int(e["metadata"]["resourceVersion"])
    )
    return [
        (e["involvedObject"]["kind"], e["involvedObject"]["name"], e["reason"]) for e in posted
    ]


def test_experiment_runs_to_succeeded_with_the_optimal_trial(
    api, namespace, k8s_store, suggestions
):
    api.create(experiment_body(namespace))
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)

    running = jobs(api, namespace)
    assert len(running) == 2
    trials = {t["metadata"]["name"]: t for t in api.list(V1B1, "Trial", namespace)}
    experiment = get(api, "Experiment", namespace, "quick")
    for job in running:
        name = job["metadata"]["name"]
        # owned by its Trial, which is owned by the Experiment
        assert job["metadata"]["ownerReferences"][0]["uid"] == trials[name]["metadata"]["uid"]
        assert (
            trials[name]["metadata"]["ownerReferences"][0]["uid"] == experiment["metadata"]["uid"]
        )
        pod = job["spec"]["template"]
        assert pod["metadata"]["labels"][TRIAL_LABEL] == name
        main = pod["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in main["env"]}
        assert env["KATIB_TRIAL_NAME"] == name
        assert main["command"][:3] == ["sh", "-c", WRAPPER]
        sidecar = pod["spec"]["initContainers"][0]
        assert sidecar["restartPolicy"] == "Always"
        assert sidecar["args"][sidecar["args"].index("-t") + 1] == name
        kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)
        assert condition_types(trials[name]["status"]) == ["Created", "Running"]

    for job in running:
        play_job(api, k8s_store, job, loss=loss_of(job))
    step(op, api, namespace)  # finishes the two, starts two more
    assert len(jobs(api, namespace)) == 2  # finished jobs are deleted, new ones created
    for job in jobs(api, namespace):
        play_job(api, k8s_store, job, loss=loss_of(job))
    step(op, api, namespace)
    step(op, api, namespace)

    status = get(api, "Experiment", namespace, "quick")["status"]
    assert condition_types(status)[-1] == "Succeeded"
    assert status["conditions"][-1]["reason"] == "ExperimentMaxTrialsReached"
    assert status["trials"] == status["trialsSucceeded"] == 4
    best = status["currentOptimalTrial"]
    lrs = {a["name"]: a["value"] for a in best["parameterAssignments"]}
    assert lrs["lr"] == "0.01"  # the lowest loss
    assert status["bestObjectiveValue"] == "0.01"
    loss = next(m for m in best["observation"]["metrics"] if m["name"] == "loss")
    assert loss == {"name": "loss", "min": "0.01", "max": "0.02", "latest": "0.01"}
    assert jobs(api, namespace) == []
    for trial in api.list(V1B1, "Trial", namespace):
        assert condition_types(trial["status"])[-1] == "Succeeded"
        assert trial["status"]["completionTime"]
    suggestion = get(api, "Suggestion", namespace, "quick")
    assert suggestion["status"]["suggestionCount"] == 4
    reasons = [r for kind, _, r in events(api, namespace) if kind == "Experiment"]
    assert reasons[0] == "ExperimentCreated" and reasons[-1] == "ExperimentMaxTrialsReached"
    assert [r for kind, _, r in events(api, namespace) if kind == "Trial"].count(
        "TrialSucceeded"
    ) == 4
    # a further pass changes nothing and posts no event
    before = len(events(api, namespace))
    step(op, api, namespace)
    assert len(events(api, namespace)) == before


def test_goal_reached_stops_the_running_trials(api, namespace, k8s_store, suggestions):
    body = experiment_body(namespace)
    body["spec"]["objective"]["goal"] = 0.015
    api.create(body)
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    first, _ = sorted(jobs(api, namespace), key=loss_of)
    play_job(api, k8s_store, first, loss=loss_of(first))  # 0.01 <= goal
    step(op, api, namespace)
    status = get(api, "Experiment", namespace, "quick")["status"]
    assert status["conditions"][-1]["reason"] == "ExperimentGoalReached"
    assert status["trialsKilled"] == 1
    assert jobs(api, namespace) == []  # the other trial's job was deleted


def test_failed_jobs_fail_the_experiment(api, namespace, k8s_store, suggestions):
    api.create(experiment_body(namespace))
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    for job in jobs(api, namespace):
        play_job(api, k8s_store, job, loss=None, failed=True)
    step(op, api, namespace)
    status = get(api, "Experiment", namespace, "quick")["status"]
    assert condition_types(status)[-1] == "Failed"
    assert status["trialsFailed"] == 2
    trial = api.list(V1B1, "Trial", namespace)[0]
    failed = trial["status"]["conditions"][-1]
    assert failed["type"] == "Failed"
    assert failed["reason"] == "TrialFailed. Job reason: BackoffLimitExceeded"
    assert "backoff limit" in failed["message"]
    warnings = [e for e in api.list("v1", "Event", namespace) if e["type"] == "Warning"]
    assert {e["reason"] for e in warnings} >= {"TrialFailed", "ExperimentFailed"}


def test_missing_metrics_make_the_trial_metrics_unavailable(
    api, namespace, k8s_store, suggestions
):
    api.create(experiment_body(namespace, maxFailedTrialCount=3))
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    job = jobs(api, namespace)[0]
    play_job(api, k8s_store, job, loss=None)
    step(op, api, namespace)
    trial = get(api, "Trial", namespace, job["metadata"]["name"])
    last = trial["status"]["conditions"][-1]
    assert (last["type"], last["reason"]) == ("MetricsUnavailable", "MetricsUnavailable")
    assert "'loss'" in last["message"]
    assert get(api, "Experiment", namespace, "quick")["status"]["trialMetricsUnavailable"] == 1


def test_a_restarted_operator_continues(api, namespace, k8s_store, suggestions, algorithm):
    api.create(experiment_body(namespace))
    step(make_operator(api, k8s_store, suggestions), api, namespace)
    names = sorted(j["metadata"]["name"] for j in jobs(api, namespace))
    for job in jobs(api, namespace):
        play_job(api, k8s_store, job, loss=loss_of(job))

    restarted = make_operator(api, k8s_store, suggestions)  # nothing carried over in memory
    step(restarted, api, namespace)
    step(restarted, api, namespace)
    trials = sorted(t["metadata"]["name"] for t in api.list(V1B1, "Trial", namespace))
    assert len(trials) == 4 and set(names) <= set(trials)  # no trial ran twice, none lost
    for job in jobs(api, namespace):
        play_job(api, k8s_store, job, loss=loss_of(job))
    step(make_operator(api, k8s_store, suggestions), api, namespace)
    status = get(api, "Experiment", namespace, "quick")["status"]
    assert status["trialsSucceeded"] == 4
    assert status["conditions"][-1]["reason"] == "ExperimentMaxTrialsReached"
    assert len(algorithm.requests) == 2  # two suggestion rounds, none repeated


def test_budget_changes_apply_and_other_changes_are_refused(
    api, namespace, k8s_store, suggestions
):
    api.create(experiment_body(namespace))
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    api.patch(V1B1, "Experiment", namespace, "quick", {"spec": {"parallelTrialCount": 3}})
    assert op.admit(get(api, "Experiment", namespace, "quick"))
    step(op, api, namespace)
    assert len(jobs(api, namespace)) == 3
    api.patch(
        V1B1, "Experiment", namespace, "quick", {"spec": {"algorithm": {"algorithmName": "tpe"}}}
    )
    assert not op.admit(get(api, "Experiment", namespace, "quick"))
    assert "SpecChangeRefused" in {r for _, _, r in events(api, namespace)}
    assert (
        k8s_store.in_namespace(namespace)
        .get_experiment("quick")
        .spec["spec"]["algorithm"]["algorithmName"]
        == "random"
    )


def test_an_invalid_experiment_is_marked_failed(api, namespace, k8s_store, suggestions):
    body = experiment_body(namespace)
    body["spec"]["parameters"][0]["feasibleSpace"]["min"] = "1.0"  # min > max
    api.create(body)
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    status = get(api, "Experiment", namespace, "quick")["status"]
    assert condition_types(status) == ["Failed"]
    assert "feasibleSpace" in status["conditions"][-1]["message"]
    assert jobs(api, namespace) == []


def test_an_unanalysable_shell_template_is_marked_failed(api, namespace, k8s_store, suggestions):
    body = experiment_body(namespace)
    container = body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    container["containers"][0]["command"] = [
        "sh",
        "-c",
        "eval python3 train.py --lr=${trialParameters.learningRate}"
        " --momentum=${trialParameters.momentum}",
    ]
    api.create(body)
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    status = get(api, "Experiment", namespace, "quick")["status"]
    assert condition_types(status) == ["Failed"]
    message = status["conditions"][-1]["message"]
    assert "spec.template.spec.containers[0].command[2]" in message
    assert "argument of eval" in message
    assert jobs(api, namespace) == []


def test_the_same_name_in_two_namespaces_runs_twice(api, namespace, k8s_store, suggestions):
    """Experiments are keyed by namespace and name: two ``quick`` run side by side, each with
    its own trials, jobs and result; deleting one leaves the other."""
    other = namespace + "-b"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    api.create(experiment_body(namespace, maxTrialCount=2))
    api.create(experiment_body(other, maxTrialCount=2, parallelTrialCount=1))
    op = make_operator(api, k8s_store, suggestions)
    for _ in range(4):
        for ns in (namespace, other):
            step(op, api, ns)
            for job in jobs(api, ns):
                if not (job.get("status") or {}).get("conditions"):
                    play_job(api, k8s_store, job, loss=loss_of(job))
    for ns in (namespace, other):
        step(op, api, ns)
    mine, theirs = k8s_store.in_namespace(namespace), k8s_store.in_namespace(other)
    assert [e.name for e in mine.list_experiments()] == ["quick"]
    assert [e.name for e in theirs.list_experiments()] == ["quick"]
    assert k8s_store.list_experiments() == []  # the default namespace holds neither
    for ns, store in ((namespace, mine), (other, theirs)):
        status = get(api, "Experiment", ns, "quick")["status"]
        assert condition_types(status)[-1] == "Succeeded", status
        names = {t.name for t in store.list_trials("quick")}
        assert len(names) == 2
        assert {t["metadata"]["name"] for t in api.list(V1B1, "Trial", ns)} == names
        assert status["currentOptimalTrial"]["bestTrialName"] in names
    assert not {t.name for t in mine.list_trials("quick")} & {
        t.name for t in theirs.list_trials("quick")
    }
    op.delete(get(api, "Experiment", namespace, "quick"))
    assert mine.list_experiments() == []
    assert [e.name for e in theirs.list_experiments()] == ["quick"]
    assert len(theirs.list_trials("quick")) == 2


def test_deletion_stops_jobs_and_forgets_the_experiment(api, namespace, k8s_store, suggestions):
    api.create(experiment_body(namespace))
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    assert len(jobs(api, namespace)) == 2
    trial_name = jobs(api, namespace)[0]["metadata"]["name"]
    k8s_store.in_namespace(namespace).add_observations(
        trial_name, [Observation.of("loss", 0.5, 0)]
    )

    body = get(api, "Experiment", namespace, "quick")
    make_operator(api, k8s_store, suggestions).delete(body)  # even a fresh operator can
    api.delete(V1B1, "Experiment", namespace, "quick")
    assert jobs(api, namespace) == []
    assert api.list(V1B1, "Trial", namespace) == []  # garbage-collected by owner
    assert [e.name for e in k8s_store.in_namespace(namespace).list_experiments()] == []
    assert k8s_store.in_namespace(namespace).get_observations(trial_name) == []


def test_training_operator_kinds_get_the_collector_on_the_master(
    api, namespace, k8s_store, suggestions
):
    body = experiment_body(namespace, maxTrialCount=1, parallelTrialCount=1, maxFailedTrialCount=1)
    container = copy.deepcopy(body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"])
    container["spec"].pop("restartPolicy")
    replica = {"restartPolicy": "OnFailure", "template": container}
    body["spec"]["trialTemplate"]["trialSpec"] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {"replicas": 1, **copy.deepcopy(replica)},
                "Worker": {"replicas": 2, **copy.deepcopy(replica)},
            }
        },
    }
    api.create(body)
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    (job,) = api.list("kubeflow.org/v1", "PyTorchJob", namespace)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert [c["name"] for c in replicas["Master"]["template"]["spec"]["initContainers"]] == [
        "metrics-logger-and-collector"
    ]
    assert "initContainers" not in replicas["Worker"]["template"]["spec"]
    name = job["metadata"]["name"]
    k8s_store.in_namespace(namespace).add_observations(name, [Observation.of("loss", 0.25, 0)])
    succeeded = {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded"}
    conditions = [{"type": "Created", "status": "True"}, succeeded]
    api.patch(
        "kubeflow.org/v1", "PyTorchJob", namespace, name,
        {"status": {"conditions": conditions}}, subresource="status",
    )  # fmt: skip
    step(op, api, namespace)
    step(op, api, namespace)
    status = get(api, "Experiment", namespace, "quick")["status"]
    assert status["conditions"][-1]["reason"] == "ExperimentMaxTrialsReached"
    assert status["bestObjectiveValue"] == "0.25"
    with pytest.raises(KubeError) as gone:
        api.get("kubeflow.org/v1", "PyTorchJob", namespace, name)
    assert gone.value.not_found


@pytest.mark.parametrize(
    ("collector", "kind", "path", "argument"),
    [
        ("File", "File", "/katib/mnist.log", "--log-path=/katib/mnist.log"),
        ("TensorFlowEvent", "Directory", "/logs/test", "--log-path=/logs"),
    ],
)
def test_a_trial_pod_writes_where_the_collector_reads(
    api, namespace, k8s_store, suggestions, collector, kind, path, argument
):
    """A pod has its own file system: the trial's command keeps the configured path (the
    collector sidecar reads it there), unlike a local run's private copy beside the log."""
    body = experiment_body(
        namespace,
        parallelTrialCount=1,
        metricsCollectorSpec={
            "source": {"fileSystemPath": {"path": path, "kind": kind}},
            "collector": {"kind": collector},
        },
    )
    body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0][
        "command"
    ] += [argument]
    api.create(body)
    step(make_operator(api, k8s_store, suggestions), api, namespace)
    (job,) = jobs(api, namespace)
    pod = job["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert main["command"][-1] == argument
    assert "TUNERY_METRICS_PATH" not in {e["name"] for e in main.get("env") or []}
    (sidecar,) = pod["initContainers"]
    assert sidecar["args"][sidecar["args"].index("-path") + 1] == path
