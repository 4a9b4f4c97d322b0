"""Operator defects of issue 16 against the fake API server: where the operator must behave as
Katib's controllers do (and stay inside the RBAC it ships).

Points: 1 one DBManager variable and Katib's ``katib-db-manager`` Service; 2 a crash between
recording and creating a job, and a job deleted by hand; 3 ``${trialSpec.Labels[k]}`` from the
template's metadata; 4 status keys that disappear are nulled; 7 a lowered parallelTrialCount
stops the newest extra trials; 11 finished experiments go quiet and CR status stays bounded;
12 RBAC verbs and ConfigMaps of other namespaces; 13 Katib's printer columns first.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client
from test_operator import (
    V1B1,
    condition_types,
    experiment_body,
    get,
    jobs,
    loss_of,
    make_operator,
    play_job,
    step,
)

from controller.operator import mirror
from controller.operator.app import build_registry
from controller.operator.core import is_finished, merge_patch
from controller.runners import kubernetes as kube_runner
from controller.runners.kubernetes import KubeApi, KubernetesRunner
from controller.templating import TrialMeta
from metrics_collector.dbclient import ADDRESS_ENV, default_dbmanager_address
from tunery.store.base import ExperimentRecord, Store, TrialRecord
from tunery.trials import Objective, ObjectiveType, TrialCondition

ROOT = Path(__file__).resolve().parents[2]


class RecordingApi(KubeApi):
    """A KubeApi that records every request as (verb, resource[/subresource], namespace)."""

    def __init__(self, api_client: k8s_client.ApiClient) -> None:
        super().__init__(api_client, timeout=10)
        self.calls: list[tuple[str, str, str]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.calls.append(_verb_and_resource(method, path))
        return super().request(method, path, **kwargs)


def _verb_and_resource(method: str, path: str) -> tuple[str, str, str]:
    parts = path.strip("/").split("/")
    parts = parts[3:] if parts[0] == "apis" else parts[2:]  # drop apis/group/version
    namespace = ""
    if parts[:1] == ["namespaces"] and len(parts) > 2:
        namespace, parts = parts[1], parts[2:]
    resource = parts[0] if parts else ""
    if len(parts) > 2:
        resource += "/" + parts[2]
    verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}.get(method)
    if verb is None:
        verb = "get" if len(parts) > 1 else "list"
    return verb, resource, namespace


@pytest.fixture()
def rec_api(cluster: Any) -> RecordingApi:
    return RecordingApi(cluster.api_client())


def active_trials(store: Store, name: str = "quick") -> list[TrialRecord]:
    return [t for t in store.list_trials(name) if t.condition.is_active]


# -- 1: one DBManager variable, Katib's Service name ------------------------------------------


def test_one_db_manager_variable_from_operator_to_report_metrics(
    api, namespace, k8s_store, suggestions
):
    api.create(experiment_body(namespace))
    op = make_operator(api, k8s_store, suggestions, db_manager_address="dbm.example:6789")
    step(op, api, namespace)
    container = jobs(api, namespace)[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[ADDRESS_ENV] == "dbm.example:6789"
    # what report_metrics reads inside that container
    assert default_dbmanager_address(env) == "dbm.example:6789"
    # the old documented name still works, the new one wins
    assert default_dbmanager_address({"TUNERY_DBMANAGER_ADDRESS": "old:1"}) == "old:1"
    both = {"TUNERY_DBMANAGER_ADDRESS": "old:1", ADDRESS_ENV: "new:2"}
    assert default_dbmanager_address(both) == "new:2"


def test_the_sdk_cluster_client_reads_the_same_variable(monkeypatch) -> None:
    from tunery.sdk.kubernetes import KubernetesBackend

    def backend() -> KubernetesBackend:
        return KubernetesBackend(namespace="ns", custom_objects_api=object(), core_api=object())

    monkeypatch.setenv("TUNERY_DBMANAGER_ADDRESS", "old:1")
    assert backend().db_manager_address == "old:1"
    monkeypatch.setenv(ADDRESS_ENV, "new:2")
    assert backend().db_manager_address == "new:2"


def test_deploy_serves_katib_db_manager_for_katib_sdk() -> None:
    kustomization = yaml.safe_load((ROOT / "deploy/kustomization.yaml").read_text())
    assert "katib-compat.yaml" in kustomization["resources"]
    docs = list(yaml.safe_load_all((ROOT / "deploy/katib-compat.yaml").read_text()))
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == (
        "katib-db-manager",
        "kubeflow",
    )  # Katib's SDK default: katib-db-manager.kubeflow:6789
    assert service["spec"]["type"] == "ExternalName"
    assert service["spec"]["externalName"].startswith("tunery-db-manager.tunery-system.svc")
    assert [p["port"] for p in service["spec"]["ports"]] == [6789]
    operator = (ROOT / "deploy/operator.yaml").read_text()
    assert ADDRESS_ENV in operator and "TUNERY_DBMANAGER_ADDRESS" not in operator
    assert ADDRESS_ENV in (ROOT / "docs/kubernetes.md").read_text()


# -- 2: crash inside a pass; a job deleted by hand -------------------------------------------


class _Crash(BaseException):
    """The operator process dying (not an error any layer handles)."""


def test_a_crash_before_the_job_post_restarts_the_trial(
    api, namespace, k8s_store, suggestions, monkeypatch
):
    api.create(experiment_body(namespace, parallelTrialCount=1))
    op = make_operator(api, k8s_store, suggestions)

    def crash(self: KubernetesRunner, launch: Any) -> Any:
        raise _Crash()

    with monkeypatch.context() as patch:
        patch.setattr(KubernetesRunner, "start", crash)
        with pytest.raises(_Crash):
            step(op, api, namespace)
    (trial,) = k8s_store.in_namespace(namespace).list_trials("quick")
    assert trial.condition is TrialCondition.RUNNING and "uid" not in trial.runner_handle
    assert jobs(api, namespace) == []

    restarted = make_operator(api, k8s_store, suggestions)
    step(restarted, api, namespace)  # NOT_STARTED: back to Created, no failure
    step(restarted, api, namespace)  # started for real
    (trial,) = k8s_store.in_namespace(namespace).list_trials("quick")
    assert trial.condition is TrialCondition.RUNNING and trial.runner_handle["uid"]
    (job,) = jobs(api, namespace)
    assert job["metadata"]["uid"] == trial.runner_handle["uid"]
    status = get(api, "Experiment", namespace, "quick")["status"]
    assert status.get("trialsFailed", 0) == 0


def test_a_job_deleted_by_hand_is_created_again_bounded(api, namespace, k8s_store, suggestions):
    api.create(experiment_body(namespace, parallelTrialCount=1, maxFailedTrialCount=3))
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    (job,) = jobs(api, namespace)
    name = job["metadata"]["name"]
    uids = [job["metadata"]["uid"]]
    for restart in range(1, kube_runner.MAX_RECREATIONS + 1):
        api.delete("batch/v1", "Job", namespace, name)
        step(op, api, namespace)
        (again,) = jobs(api, namespace)
        assert again["metadata"]["name"] == name and again["metadata"]["uid"] not in uids
        uids.append(again["metadata"]["uid"])
        trial = k8s_store.in_namespace(namespace).get_trial(name)
        assert trial.condition is TrialCondition.RUNNING
        assert trial.runner_handle["restarts"] == restart
        assert trial.runner_handle["uid"] == again["metadata"]["uid"]
        # still owned by its Trial, as first created
        assert again["metadata"]["ownerReferences"][0]["kind"] == "Trial"
    api.delete("batch/v1", "Job", namespace, name)
    step(op, api, namespace)  # past the bound: the trial fails
    trial = k8s_store.in_namespace(namespace).get_trial(name)
    assert trial.condition is TrialCondition.FAILED
    assert trial.reason == "TrialFailed. Job reason: JobNotFound"
    assert f"created again {kube_runner.MAX_RECREATIONS} time(s)" in trial.message
    assert "job" not in trial.runner_handle  # the recorded body goes once the trial ended


def test_a_finished_trial_keeps_no_job_body(api, namespace, k8s_store, suggestions):
    api.create(experiment_body(namespace, parallelTrialCount=1))
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    (job,) = jobs(api, namespace)
    assert (
        k8s_store.in_namespace(namespace)
        .get_trial(job["metadata"]["name"])
        .runner_handle["job"]["kind"]
        == "Job"
    )
    play_job(api, k8s_store, job, loss=loss_of(job))
    step(op, api, namespace)
    handle = k8s_store.in_namespace(namespace).get_trial(job["metadata"]["name"]).runner_handle
    assert handle["deleted"] is True and "job" not in handle


# -- 3: ${trialSpec.Labels[k]} / Annotations[k] from the template's metadata ------------------


def test_trial_metadata_comes_from_the_template(api, namespace, k8s_store, suggestions):
    body = experiment_body(namespace, parallelTrialCount=1)
    template = body["spec"]["trialTemplate"]
    template["trialSpec"]["metadata"] = {
        "labels": {"custom-key": "custom-value"},
        "annotations": {"note": "from-annotation"},
    }
    template["trialParameters"] += [
        {"name": "label", "reference": "${trialSpec.Labels[custom-key]}"},
        {"name": "note", "reference": "${trialSpec.Annotations[note]}"},
        {"name": "kind", "reference": "${trialSpec.Kind}"},
    ]
    container = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] += [
        "--label=${trialParameters.label}",
        "--note=${trialParameters.note}",
        "--kind=${trialParameters.kind}",
    ]
    api.create(body)
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    (job,) = jobs(api, namespace)
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    text = " ".join(command)
    assert "--label=custom-value" in text
    assert "--note=from-annotation" in text
    assert "--kind=Job" in text


def test_trial_meta_of_template_names_a_missing_label() -> None:
    meta = TrialMeta.of_template("t-1", "ns", {"kind": "Job", "metadata": {"labels": {"a": 1}}})
    assert meta.resolve("Labels[a]") == "1"
    with pytest.raises(ValueError, match="template's metadata has no such annotation"):
        meta.resolve("Annotations[a]")


# -- 4 + 11: a restart nulls completionTime and wakes a quiet experiment ----------------------


def test_restart_removes_completion_time_from_the_resource(api, namespace, k8s_store, suggestions):
    api.create(experiment_body(namespace, maxTrialCount=2, resumePolicy="LongRunning"))
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    for job in jobs(api, namespace):
        play_job(api, k8s_store, job, loss=loss_of(job))
    step(op, api, namespace)
    experiment = get(api, "Experiment", namespace, "quick")
    assert experiment["status"]["completionTime"] and is_finished(experiment)

    api.patch(V1B1, "Experiment", namespace, "quick", {"spec": {"maxTrialCount": 4}})
    assert op.admit(get(api, "Experiment", namespace, "quick"))
    experiment = get(api, "Experiment", namespace, "quick")
    assert "completionTime" not in experiment["status"]  # nulled by the merge patch
    assert condition_types(experiment["status"])[-1] == "Restarting"
    assert not is_finished(experiment)  # kopf's timer runs for it again
    step(op, api, namespace)
    assert len(jobs(api, namespace)) == 2


def test_merge_patch_nulls_dropped_keys() -> None:
    previous = {"completionTime": "2026-01-01T00:00:00Z", "trials": 2, "conditions": []}
    assert merge_patch(previous, {"trials": 3, "conditions": []}) == {
        "trials": 3,
        "conditions": [],
        "completionTime": None,
    }


# -- 7: lowering parallelTrialCount -----------------------------------------------------------


def test_lowering_parallelism_stops_the_newest_extra_trials(
    api, namespace, k8s_store, suggestions
):
    api.create(experiment_body(namespace, parallelTrialCount=3, maxTrialCount=6))
    op = make_operator(api, k8s_store, suggestions)
    step(op, api, namespace)
    first, *newest = [t.name for t in k8s_store.in_namespace(namespace).list_trials("quick")]
    assert len(newest) == 2 and len(jobs(api, namespace)) == 3

    api.patch(V1B1, "Experiment", namespace, "quick", {"spec": {"parallelTrialCount": 1}})
    assert op.admit(get(api, "Experiment", namespace, "quick"))
    step(op, api, namespace)
    assert [t.name for t in active_trials(k8s_store.in_namespace(namespace))] == [first]
    assert [j["metadata"]["name"] for j in jobs(api, namespace)] == [first]
    for name in newest:
        trial = k8s_store.in_namespace(namespace).get_trial(name)
        assert trial.condition is TrialCondition.KILLED
        assert "parallelTrialCount was lowered to 1" in trial.message
        cr = get(api, "Trial", namespace, name)
        assert condition_types(cr["status"])[-1] == "Killed"
    status = get(api, "Experiment", namespace, "quick")["status"]
    assert (status["trialsRunning"], status["trialsKilled"]) == (1, 2)
    step(op, api, namespace)  # stays at one
    assert len(active_trials(k8s_store.in_namespace(namespace))) == 1


# -- 11: quiet when finished; bounded status --------------------------------------------------


def test_a_finished_experiment_goes_quiet(api, rec_api, namespace, k8s_store, suggestions):
    api.create(experiment_body(namespace, maxTrialCount=2))
    op = make_operator(rec_api, k8s_store, suggestions)
    step(op, api, namespace)
    for job in jobs(api, namespace):
        play_job(api, k8s_store, job, loss=loss_of(job))
    step(op, api, namespace)
    body = get(api, "Experiment", namespace, "quick")
    assert condition_types(body["status"])[-1] == "Succeeded" and is_finished(body)

    rec_api.calls.clear()
    for _ in range(3):
        assert op.reconcile(body) is None
    assert rec_api.calls == []  # no list, no get: nothing per pass

    registry = build_registry(op, op.settings, k8s_client.Configuration())
    (timer,) = list(registry._spawning.get_all_handlers())
    assert timer.when(body=body) is False  # kopf runs no timer for it
    running = {"status": {"conditions": [{"type": "Running", "status": "True"}]}}
    assert timer.when(body=running) is True


def _trial(i: int, condition: TrialCondition) -> TrialRecord:
    return TrialRecord(
        name=f"quick-{i:05d}",
        experiment_name="quick",
        assignment={"lr": str(i)},
        condition=condition,
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=i),
    )


def test_suggestion_status_stays_bounded() -> None:
    trials: list[TrialRecord] = [_trial(0, TrialCondition.RUNNING)]  # an old one still running
    trials += [_trial(i, TrialCondition.SUCCEEDED) for i in range(1, 10_000)]
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    status = mirror.suggestion_status_document(trials, {}, {}, now)
    names = [s["name"] for s in status["suggestions"]]
    assert status["suggestionCount"] == 10_000
    assert len(names) == mirror.SUGGESTION_LIMIT + 1
    assert names[0] == "quick-00000" and names[-1] == "quick-09999"
    assert len(yaml.safe_dump(status)) < 64 * 1024


def test_experiment_trial_lists_stay_bounded_and_counts_exact() -> None:
    names = [f"quick-{i:05d}" for i in range(10_000)]
    record = ExperimentRecord(
        name="quick",
        spec={},
        status={"succeededTrialList": names, "trialsSucceeded": 10_000, "conditions": []},
    )
    objective = Objective(ObjectiveType.MINIMIZE, "loss")
    status = mirror.experiment_status_document(record, objective)
    assert status["succeededTrialList"] == names[-mirror.TRIAL_LIST_LIMIT :]
    assert status["trialsSucceeded"] == 10_000


# -- 12: RBAC and ConfigMaps of other namespaces ----------------------------------------------


def _rules() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "deploy/rbac.yaml").read_text())
    return [r for d in docs if d and d["kind"] == "ClusterRole" for r in d["rules"]]


def _allowed(verb: str, resource: str) -> bool:
    return any(resource in r["resources"] and verb in r["verbs"] for r in _rules())


def test_rbac_verbs_are_the_ones_used() -> None:
    for resource in ("trials", "suggestions"):
        assert not _allowed("delete", resource) and not _allowed("watch", resource)
    assert not _allowed("list", "jobs")
    assert _allowed("update", "trials/finalizers")  # Jobs block their Trial's deletion
    assert _allowed("update", "experiments/finalizers")
    (configmaps,) = [r for r in _rules() if "configmaps" in r["resources"]]
    assert configmaps["verbs"] == ["get"]


def test_the_operator_stays_inside_its_rbac(api, rec_api, namespace, k8s_store, suggestions):
    """A whole life (run, finish a trial, lower the budget, delete) uses only granted verbs;
    the test's own calls go through ``api``, the operator's through ``rec_api``."""
    api.create(experiment_body(namespace, parallelTrialCount=3, maxTrialCount=4))
    op = make_operator(rec_api, k8s_store, suggestions)
    step(op, api, namespace)
    job = jobs(api, namespace)[0]
    play_job(api, k8s_store, job, loss=loss_of(job))
    step(op, api, namespace)
    api.patch(V1B1, "Experiment", namespace, "quick", {"spec": {"parallelTrialCount": 1}})
    op.admit(get(api, "Experiment", namespace, "quick"))
    step(op, api, namespace)
    op.delete(get(api, "Experiment", namespace, "quick"))
    used = {(verb, resource) for verb, resource, _ in rec_api.calls}
    assert {("create", "jobs"), ("delete", "jobs"), ("list", "trials"), ("create", "events")} <= (
        used
    )
    assert sorted(u for u in used if not _allowed(*u)) == []
    assert {ns for _, _, ns in rec_api.calls} == {namespace}


def test_a_config_map_of_another_namespace_is_refused(api, namespace, k8s_store, suggestions):
    other = namespace + "-shared"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    body = experiment_body(namespace)
    trial_spec = body["spec"]["trialTemplate"].pop("trialSpec")
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "templates", "namespace": other},
            "data": {"job.yaml": yaml.safe_dump(trial_spec)},
        }
    )
    body["spec"]["trialTemplate"]["configMap"] = {
        "configMapName": "templates",
        "configMapNamespace": other,
        "templatePath": "job.yaml",
    }
    api.create(body)
    step(make_operator(api, k8s_store, suggestions), api, namespace)
    status = get(api, "Experiment", namespace, "quick")["status"]
    assert condition_types(status) == ["Failed"]
    message = status["conditions"][-1]["message"]
    assert "spec.trialTemplate.configMap.configMapNamespace" in message and repr(other) in message
    assert jobs(api, namespace) == []

    # a cluster admin allows it: the same experiment (re-created) runs
    api.delete(V1B1, "Experiment", namespace, "quick")
    api.create(body)
    allowed = make_operator(api, k8s_store, suggestions, template_namespaces=(other,))
    step(allowed, api, namespace)
    assert len(jobs(api, namespace)) == 2


# -- 13: Katib's printer columns first --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("experiments", ["Type", "Status", "Age"]),
        ("trials", ["Type", "Status", "Age"]),
        ("suggestions", ["Type", "Status", "Requested", "Assigned", "Age"]),
    ],
)
def test_katib_printer_columns_come_first(name: str, first: list[str]) -> None:
    crd = yaml.safe_load((ROOT / "deploy/crds" / f"{name}.yaml").read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns][: len(first)] == first
    paths = {c["name"]: c["jsonPath"] for c in columns}
    assert paths["Type"] == ".status.conditions[-1:].type"
    assert paths["Status"] == ".status.conditions[-1:].status"
