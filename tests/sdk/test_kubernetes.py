"""The SDK's Kubernetes backend against a fake cluster: Experiment and Trial custom objects in a
CustomObjectsApi stand-in, pod logs from a CoreV1Api stand-in, metrics from a real gRPC
DBManager stand-in. The fake "controller" runs each trial's rendered container as a process,
so the document tune() submits is executed as a pod would execute it."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import sys
import threading
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubernetes.client.exceptions import ApiException

from controller.templating import TrialMeta, render_trial_job
from tunery import search
from tunery.api import api_pb2, api_pb2_grpc
from tunery.sdk import (
    AlreadyExistsError,
    BackendUnavailableError,
    Client,
    ExperimentFailedError,
    InvalidArgumentError,
    InvalidExperimentError,
    NoResultError,
    NotFoundError,
    TuneryError,
    UnsupportedError,
    WaitTimeoutError,
    tune,
)
from tunery.serving import create_server, service_name
from tunery.trials import TrialCondition

GROUP, VERSION = "kubeflow.org", "v1beta1"
LABEL = "katib.kubeflow.org/experiment"


class FakeCustomObjects:
    """In-memory ``kubeflow.org/v1beta1`` objects with the CustomObjectsApi methods tune uses."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.on_get: Any = None
        self.lock = threading.Lock()
        self.clock = 0

    def _check(self, group: str, version: str) -> None:
        assert (group, version) == (GROUP, VERSION)

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: Any, **kw: Any
    ) -> dict[str, Any]:
        self._check(group, version)
        self.calls.append(("create", (namespace, plural), {"body": body, **kw}))
        json.dumps(body)  # the API only takes JSON
        name = body["metadata"]["name"]
        with self.lock:
            if (plural, namespace, name) in self.objects:
                raise ApiException(status=409, reason="Conflict")
            self.clock += 1
            stored = copy.deepcopy(body)
            stored["metadata"].update(
                namespace=namespace, creationTimestamp=f"2026-01-01T00:00:{self.clock:02d}Z"
            )
            self.objects[(plural, namespace, name)] = stored
            return copy.deepcopy(stored)

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **kw: Any
    ) -> dict[str, Any]:
        self._check(group, version)
        self.calls.append(("get", (namespace, plural, name), kw))
        if self.on_get is not None and plural == "experiments":
            self.on_get(namespace, name)
        with self.lock:
            if (plural, namespace, name) not in self.objects:
                raise ApiException(status=404, reason="Not Found")
            return copy.deepcopy(self.objects[(plural, namespace, name)])

    def list_namespaced_custom_object(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        label_selector: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        self._check(group, version)
        self.calls.append(("list", (namespace, plural), {"label_selector": label_selector, **kw}))
        wanted = dict(p.split("=", 1) for p in label_selector.split(",")) if label_selector else {}
        with self.lock:
            items = [
                copy.deepcopy(o)
                for (p, ns, _), o in self.objects.items()
                if p == plural
                and ns == namespace
                and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
            ]
        return {"items": items}

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any, **kw
    ) -> dict[str, Any]:
        self._check(group, version)
        self.calls.append(("patch", (namespace, plural, name), {"body": body, **kw}))
        with self.lock:
            if (plural, namespace, name) not in self.objects:
                raise ApiException(status=404, reason="Not Found")
            stored = self.objects[(plural, namespace, name)]
            stored["spec"].update(body["spec"])
            return copy.deepcopy(stored)

    def delete_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **kw: Any
    ) -> dict[str, Any]:
        self._check(group, version)
        self.calls.append(("delete", (namespace, plural, name), kw))
        with self.lock:
            if self.objects.pop((plural, namespace, name), None) is None:
                raise ApiException(status=404, reason="Not Found")
        return {"status": "Success"}

    # -- what a controller does -----------------------------------------------------------------

    def add_trial(
        self, experiment: Mapping[str, Any], name: str, assignment: Mapping[str, str], **status
    ) -> dict[str, Any]:
        ns = experiment["metadata"]["namespace"]
        template = experiment["spec"]["trialTemplate"]
        trial = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Trial",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {LABEL: experiment["metadata"]["name"]},
            },
            "spec": {
                "objective": experiment["spec"]["objective"],
                "parameterAssignments": [{"name": k, "value": v} for k, v in assignment.items()],
                "primaryContainerName": template["primaryContainerName"],
                "runSpec": render_trial_job(
                    template["trialSpec"],
                    template["trialParameters"],
                    assignment,
                    TrialMeta(name=name, namespace=ns),
                ),
            },
            "status": status,
        }
        with self.lock:
            self.clock += 1
            trial["metadata"]["creationTimestamp"] = f"2026-01-01T00:01:{self.clock:02d}Z"
            self.objects[("trials", ns, name)] = trial
        return trial


def _condition(type_: str, reason: str = "", message: str = "", at: int = 0) -> dict[str, str]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastUpdateTime": f"2026-01-01T00:02:{at:02d}Z",
    }


class FakeCore:
    """CoreV1Api stand-in: one pod per trial, logs as byte chunks."""

    def __init__(self, logs: Mapping[str, str]) -> None:
        self.logs = dict(logs)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def list_namespaced_pod(self, namespace: str, label_selector: str = "", **kw: Any) -> Any:
        self.calls.append(("pods", {"namespace": namespace, "label_selector": label_selector}))
        trial = dict(p.split("=", 1) for p in label_selector.split(","))[
            "katib.kubeflow.org/trial"
        ]
        if trial not in self.logs:
            return types.SimpleNamespace(items=[])
        meta = types.SimpleNamespace(name=f"{trial}-pod", creation_timestamp="t")
        return types.SimpleNamespace(items=[types.SimpleNamespace(metadata=meta)])

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> Any:
        self.calls.append(("log", {"name": name, "namespace": namespace, **kw}))
        text = self.logs[name.removesuffix("-pod")].encode()

        class Response:
            released = False

            def stream(self, amt: int) -> Iterator[bytes]:
                for i in range(0, len(text), 7):  # chunks that split lines
                    yield text[i : i + 7]

            def release_conn(self) -> None:
                Response.released = True

        return Response()


@pytest.fixture
def cluster() -> FakeCustomObjects:
    return FakeCustomObjects()


@pytest.fixture
def client(cluster: FakeCustomObjects) -> Client:
    core = FakeCore({"exp-a-t1": "epoch=1 loss=0.5\nepoch=2 loss=0.25\ndone"})
    return Client("kubernetes", namespace="team", custom_objects_api=cluster, core_api=core)


EXPERIMENT_YAML = """
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: exp-a
spec:
  objective: {type: minimize, objectiveMetricName: loss}
  algorithm: {algorithmName: random}
  maxTrialCount: 4
  parallelTrialCount: 2
  parameters:
    - {name: lr, parameterType: double, feasibleSpace: {min: "0.01", max: "0.1"}}
    - {name: layers, parameterType: int, feasibleSpace: {min: "1", max: "4"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - {name: lr, reference: lr}
      - {name: layers, reference: layers}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                image: trainer
                command:
                  - train
                  - "--lr=${trialParameters.lr}"
                  - "--layers=${trialParameters.layers}"
            restartPolicy: Never
"""


# -- experiments -------------------------------------------------------------------------------


def test_create_get_list_edit_delete(client: Client, cluster: FakeCustomObjects) -> None:
    assert client.namespace == "team"
    assert client.create_experiment(EXPERIMENT_YAML) == "exp-a"
    kind, (ns, plural), kw = cluster.calls[0]
    assert (kind, ns, plural) == ("create", "team", "experiments")
    body = kw["body"]
    assert body["metadata"] == {"name": "exp-a", "namespace": "team"}
    assert body["spec"]["objective"]["metricStrategies"] == [{"name": "loss", "value": "min"}]
    assert "_request_timeout" in kw
    with pytest.raises(AlreadyExistsError, match="'exp-a' already exists"):
        client.create_experiment(EXPERIMENT_YAML)
    assert client.get_experiment("exp-a")["spec"]["maxTrialCount"] == 4
    assert [e["metadata"]["name"] for e in client.list_experiments()] == ["exp-a"]
    assert client.list_experiments(namespace="other") == []
    updated = client.edit_experiment_budget("exp-a", max_trial_count=8, parallel_trial_count=1)
    assert (updated["spec"]["maxTrialCount"], updated["spec"]["parallelTrialCount"]) == (8, 1)
    assert cluster.calls[-1][2]["body"] == {"spec": {"maxTrialCount": 8, "parallelTrialCount": 1}}
    client.delete_experiment("exp-a")
    with pytest.raises(NotFoundError, match="experiment 'exp-a' not found"):
        client.get_experiment("exp-a")
    with pytest.raises(NotFoundError):
        client.delete_experiment("exp-a")


def test_create_from_a_file_and_a_dict_in_another_namespace(
    client: Client, cluster: FakeCustomObjects, tmp_path: Path
) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(EXPERIMENT_YAML)
    assert client.create_experiment(path, namespace="ns2") == "exp-a"
    import yaml

    document = yaml.safe_load(EXPERIMENT_YAML)
    document["metadata"]["name"] = "exp-b"
    assert client.create_experiment(document, "ns2") == "exp-b"
    assert {e["metadata"]["name"] for e in client.list_experiments("ns2")} == {"exp-a", "exp-b"}


def test_an_invalid_document_lists_every_problem(client: Client) -> None:
    bad = EXPERIMENT_YAML.replace('min: "0.01"', 'min: "abc"').replace("maxTrialCount: 4", "")
    bad = bad.replace("type: minimize", "type: smallest")
    with pytest.raises(InvalidExperimentError) as caught:
        client.create_experiment(bad)
    paths = [e.path for e in caught.value.errors]
    assert "spec.parameters[0].feasibleSpace.min" in paths
    assert "spec.objective.type" in paths
    assert "spec.parameters[0].feasibleSpace.min" in str(caught.value)


def test_api_errors_are_mapped(cluster: FakeCustomObjects) -> None:
    class Failing(FakeCustomObjects):
        def __init__(self, exc: Exception) -> None:
            super().__init__()
            self.exc = exc

        def get_namespaced_custom_object(self, *a: Any, **kw: Any) -> dict[str, Any]:
            raise self.exc

    def client_for(exc: Exception) -> Client:
        return Client("kubernetes", namespace="n", custom_objects_api=Failing(exc), core_api=1)

    body = json.dumps({"message": 'admission webhook denied: spec.maxTrialCount: "0"'})
    rejected = ApiException(status=422, reason="Unprocessable")
    rejected.body = body
    with pytest.raises(InvalidExperimentError, match="admission webhook denied"):
        client_for(rejected).get_experiment("x")
    with pytest.raises(BackendUnavailableError, match="unavailable"):
        client_for(ApiException(status=503, reason="Service Unavailable")).get_experiment("x")
    with pytest.raises(BackendUnavailableError):
        client_for(ConnectionRefusedError("refused")).get_experiment("x")
    with pytest.raises(TuneryError, match="not allowed"):
        client_for(ApiException(status=403, reason="Forbidden")).get_experiment("x")
    with pytest.raises(InvalidExperimentError, match="Bad Request"):
        client_for(ApiException(status=400, reason="Bad Request")).get_experiment("x")
    with pytest.raises(KeyError):  # a bug in the caller is not disguised as an API error
        client_for(KeyError("oops")).get_experiment("x")


def test_wait_for_experiment_condition(client: Client, cluster: FakeCustomObjects) -> None:
    client.create_experiment(EXPERIMENT_YAML)
    polls = []

    def progress(ns: str, name: str) -> None:
        polls.append(name)
        experiment = cluster.objects[("experiments", ns, name)]
        conditions = [_condition("Created", "ExperimentCreated")]
        if len(polls) >= 2:
            conditions.append(_condition("Running", "ExperimentRunning", at=1))
        if len(polls) >= 3:
            conditions[-1]["status"] = "False"
            conditions.append(_condition("Succeeded", "ExperimentMaxTrialsReached", at=2))
        experiment["status"] = {"conditions": conditions}

    cluster.on_get = progress
    document = client.wait_for_experiment_condition("exp-a", polling_interval=0.001, timeout=5)
    assert len(polls) == 3 and client.is_experiment_succeeded("exp-a")
    assert document["status"]["conditions"][-1]["reason"] == "ExperimentMaxTrialsReached"
    assert client.is_experiment_created("exp-a") and not client.is_experiment_running("exp-a")
    assert not client.is_experiment_failed("exp-a")
    assert not client.is_experiment_restarting("exp-a")
    assert [c["type"] for c in client.get_experiment_conditions("exp-a")] == [
        "Created",
        "Running",
        "Succeeded",
    ]
    cluster.on_get = None
    with pytest.raises(WaitTimeoutError, match="to be Restarting"):
        client.wait_for_experiment_condition(
            "exp-a", expected_condition="Restarting", timeout=0.05, polling_interval=0.01
        )
    with pytest.raises(InvalidArgumentError, match="expected_condition"):
        client.wait_for_experiment_condition("exp-a", expected_condition="Done")


def test_waiting_on_a_failed_experiment_raises_runtime_error(
    client: Client, cluster: FakeCustomObjects
) -> None:
    client.create_experiment(EXPERIMENT_YAML)
    cluster.objects[("experiments", "team", "exp-a")]["status"] = {
        "conditions": [_condition("Failed", "ExperimentFailed", "max failed count reached")]
    }
    with pytest.raises(RuntimeError, match="max failed count reached") as caught:
        client.wait_for_experiment_condition("exp-a", polling_interval=0.01)
    assert isinstance(caught.value, ExperimentFailedError)
    assert client.wait_for_experiment_condition("exp-a", expected_condition="Failed")


def test_resume_is_local_only(client: Client) -> None:
    with pytest.raises(UnsupportedError, match="edit_experiment_budget"):
        client.resume_experiment("exp-a")


# -- trials ------------------------------------------------------------------------------------


def _with_trials(client: Client, cluster: FakeCustomObjects) -> None:
    client.create_experiment(EXPERIMENT_YAML)
    experiment = cluster.objects[("experiments", "team", "exp-a")]
    metrics = [{"name": "loss", "min": "0.25", "max": "0.5", "latest": "0.25"}]
    cluster.add_trial(
        experiment,
        "exp-a-t1",
        {"lr": "0.05", "layers": "3"},
        conditions=[_condition("Running"), _condition("Succeeded", "TrialSucceeded", at=1)],
        observation={"metrics": metrics},
        startTime="2026-01-01T00:00:00Z",
        completionTime="2026-01-01T00:01:00Z",
    )
    cluster.add_trial(
        experiment,
        "exp-a-t2",
        {"lr": "0.02", "layers": "1"},
        conditions=[_condition("Failed", "TrialFailed", "Trial has failed")],
    )
    experiment["status"] = {
        "conditions": [_condition("Running", "ExperimentRunning")],
        "currentOptimalTrial": {
            "bestTrialName": "exp-a-t1",
            "parameterAssignments": [
                {"name": "lr", "value": "0.05"},
                {"name": "layers", "value": "3"},
            ],
            "observation": {"metrics": metrics},
        },
    }


def test_list_trials_and_the_optimal_trial_are_typed(
    client: Client, cluster: FakeCustomObjects
) -> None:
    _with_trials(client, cluster)
    trials = client.list_trials("exp-a")
    assert cluster.calls[-1][2]["label_selector"] == f"{LABEL}=exp-a"
    assert [t.name for t in trials] == ["exp-a-t1", "exp-a-t2"]
    first, second = trials
    assert first.parameters == {"lr": 0.05, "layers": 3}
    assert type(first.parameters["layers"]) is int
    assert first.condition is TrialCondition.SUCCEEDED and first.value == 0.25
    assert first.metrics == {"loss": 0.25}
    assert first.start_time == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert second.condition == "Failed" and second.value is None
    assert second.message == "Trial has failed"
    assert client.get_trial("exp-a-t2").condition is TrialCondition.FAILED
    best = client.get_optimal_hyperparameters("exp-a")
    assert best is not None
    assert best.best_trial_name == "exp-a-t1"
    assert best.parameter_assignments == {"lr": 0.05, "layers": 3}
    assert best.value == 0.25
    result = client.get_result("exp-a")
    assert result.best_trial == "exp-a-t1" and len(result.trials) == 2
    assert result.condition == "Running"
    with pytest.raises(NotFoundError, match="trial 'nope'"):
        client.get_trial("nope")


def test_no_optimal_trial_before_metrics(client: Client) -> None:
    client.create_experiment(EXPERIMENT_YAML)
    assert client.get_optimal_hyperparameters("exp-a") is None


def test_trial_logs_come_from_the_trials_pod(client: Client, cluster: FakeCustomObjects) -> None:
    _with_trials(client, cluster)
    lines = list(client.get_trial_logs("exp-a-t1"))
    assert lines == ["epoch=1 loss=0.5", "epoch=2 loss=0.25", "done"]
    core = client._kube._core
    assert core.calls[0][1]["label_selector"] == "katib.kubeflow.org/trial=exp-a-t1"
    log_call = core.calls[-1][1]
    assert (log_call["name"], log_call["container"], log_call["follow"]) == (
        "exp-a-t1-pod",
        "main",
        False,
    )
    list(client.get_trial_logs("exp-a-t1", follow=True))
    assert core.calls[-1][1]["follow"] is True
    assert core.calls[-1][1]["_request_timeout"] is None  # a quiet trial must not time out
    with pytest.raises(NotFoundError, match="has no pod"):
        client.get_trial_logs("exp-a-t2")  # raises at once, not at the first line


class FakeDBManager(api_pb2_grpc.DBManagerServicer):
    def __init__(self) -> None:
        self.requests: list[str] = []

    def GetObservationLog(self, request: Any, context: Any) -> Any:
        self.requests.append(request.trial_name)
        logs = [
            ("2026-01-01T00:00:01.123456789Z", "loss", "0.5"),
            ("2026-01-01T00:00:02Z", "loss", "0.25"),
            ("", "acc", "0.75"),
        ]
        return api_pb2.GetObservationLogReply(
            observation_log=api_pb2.ObservationLog(
                metric_logs=[
                    api_pb2.MetricLog(time_stamp=t, metric=api_pb2.Metric(name=n, value=v))
                    for t, n, v in logs
                ]
            )
        )


def test_trial_metrics_come_from_the_dbmanager(cluster: FakeCustomObjects) -> None:
    servicer = FakeDBManager()

    def register(server: grpc.Server) -> str:
        api_pb2_grpc.add_DBManagerServicer_to_server(servicer, server)
        return service_name("DBManager")

    server, port = create_server([register], "127.0.0.1:0")
    server.start()
    try:
        client = Client(
            "kubernetes",
            namespace="team",
            custom_objects_api=cluster,
            core_api=FakeCore({}),
            db_manager_address=f"127.0.0.1:{port}",
        )
        _with_trials(client, cluster)
        observations = client.get_trial_metrics("exp-a-t1")
    finally:
        server.stop(0)
    assert servicer.requests == ["exp-a-t1"]
    assert [(o.metric_name, o.value, o.step, o.numeric) for o in observations] == [
        ("loss", "0.5", 0, 0.5),
        ("loss", "0.25", 1, 0.25),
        ("acc", "0.75", 0, 0.75),
    ]
    assert observations[0].time == dt.datetime(2026, 1, 1, 0, 0, 1, 123456, tzinfo=dt.UTC)
    assert observations[2].time.year == 1  # Katib's zero time


def test_an_unreachable_dbmanager_is_unavailable(cluster: FakeCustomObjects) -> None:
    client = Client(
        "kubernetes",
        namespace="team",
        custom_objects_api=cluster,
        core_api=FakeCore({}),
        db_manager_address="127.0.0.1:1",
    )
    client._kube.request_timeout = 2.0
    _with_trials(client, cluster)
    with pytest.raises(BackendUnavailableError, match=r"DBManager at 127\.0\.0\.1:1"):
        client.get_trial_metrics("exp-a-t1")


# -- tune on the cluster --------------------------------------------------------------------------


def self_contained(p: dict) -> float:
    return (p["lr"] - 0.05) ** 2 + p["layers"] * 0.001 + (0.0 if p["opt"] == "adam" else 1.0)


class Controller:
    """Acts on every poll of the experiment: creates and runs one trial per poll (its rendered
    container as a process), then marks the experiment Succeeded at maxTrialCount."""

    ASSIGNMENTS = [
        {"lr": "0.05", "layers": "2", "opt": "adam"},
        {"lr": "0.01", "layers": "1", "opt": "sgd"},
    ]

    def __init__(self, cluster: FakeCustomObjects, tmp_path: Path) -> None:
        self.cluster = cluster
        self.tmp_path = tmp_path
        self.outputs: list[str] = []

    def __call__(self, ns: str, name: str) -> None:
        experiment = self.cluster.objects[("experiments", ns, name)]
        trials = [k for k in self.cluster.objects if k[0] == "trials"]
        if len(trials) >= len(self.ASSIGNMENTS):
            best = min(
                (self.cluster.objects[k] for k in trials),
                key=lambda t: float(t["status"]["observation"]["metrics"][0]["min"]),
            )
            experiment["status"] = {
                "conditions": [
                    _condition("Created"),
                    _condition("Succeeded", "ExperimentMaxTrialsReached", "done", at=9),
                ],
                "currentOptimalTrial": {
                    "bestTrialName": best["metadata"]["name"],
                    "parameterAssignments": best["spec"]["parameterAssignments"],
                    "observation": best["status"]["observation"],
                },
            }
            return
        index = len(trials)
        trial = self.cluster.add_trial(
            experiment, f"{name}-{index}", self.ASSIGNMENTS[index], conditions=[]
        )
        container = trial["spec"]["runSpec"]["spec"]["template"]["spec"]["containers"][0]
        import subprocess

        argv = [sys.executable, *container["command"][1:], *container["args"]]
        done = subprocess.run(
            argv, cwd=self.tmp_path, capture_output=True, text=True, timeout=60, check=True
        )
        self.outputs.append(done.stdout)
        value = re.search(r"loss=(\S+)", done.stdout).group(1)  # type: ignore[union-attr]
        trial["status"] = {
            "conditions": [_condition("Succeeded", "TrialSucceeded", at=index)],
            "observation": {
                "metrics": [{"name": "loss", "min": value, "max": value, "latest": value}]
            },
        }
        experiment["status"] = {"conditions": [_condition("Running", "ExperimentRunning")]}


def test_tune_on_the_cluster_submits_and_waits(
    client: Client, cluster: FakeCustomObjects, tmp_path: Path
) -> None:
    cluster.on_get = Controller(cluster, tmp_path)
    result = tune(
        self_contained,
        {
            "lr": search.double(0.001, 0.1),
            "layers": search.int(1, 4),
            "opt": search.categorical(["sgd", "adam"]),
        },
        name="cluster-tune",
        objective_metric_name="loss",
        objective_type="minimize",
        max_trial_count=2,
        resources_per_trial={"gpu": 1},
        backend="kubernetes",
        client=client,
        polling_interval=0.001,
        verbose=False,
        base_image="ghcr.io/me/image:1",
    )
    create = next(c for c in cluster.calls if c[0] == "create")
    body = create[2]["body"]
    assert create[1] == ("team", "experiments")
    assert body["metadata"] == {"name": "cluster-tune", "namespace": "team"}
    assert body["spec"]["maxTrialCount"] == 2 and body["spec"]["parallelTrialCount"] == 2
    assert "resumePolicy" not in body["spec"] or body["spec"]["resumePolicy"] == "Never"
    container = body["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["image"] == "ghcr.io/me/image:1"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert result.experiment_name == "cluster-tune"
    assert result.best_trial == "cluster-tune-0"
    assert result.best_parameters == {"lr": 0.05, "layers": 2, "opt": "adam"}
    assert result.best_value == pytest.approx(0.002)
    assert [t.condition for t in result.trials] == ["Succeeded", "Succeeded"]
    assert result.reason == "ExperimentMaxTrialsReached"


def test_tune_on_the_cluster_without_waiting(client: Client, cluster: FakeCustomObjects) -> None:
    result = tune(
        self_contained,
        {"lr": search.double(0.001, 0.1), "layers": 2, "opt": "adam"},
        backend="kubernetes",
        client=client,
        wait=False,
        verbose=False,
    )
    assert result.best_trial is None and result.condition == "Created"
    assert ("experiments", "team", result.experiment_name) in cluster.objects
    other = tune(
        self_contained,
        {"lr": search.double(0.001, 0.1), "layers": 2, "opt": "adam"},
        backend="kubernetes",
        client=client,
        namespace="elsewhere",
        wait=False,
        verbose=False,
    )
    assert ("experiments", "elsewhere", other.experiment_name) in cluster.objects


def test_tune_on_the_cluster_reports_failure_and_timeout(
    client: Client, cluster: FakeCustomObjects
) -> None:
    def fail(ns: str, name: str) -> None:
        experiment = cluster.objects[("experiments", ns, name)]
        experiment["status"] = {
            "conditions": [_condition("Failed", "ExperimentFailed", "Suggestion has failed")]
        }

    cluster.on_get = fail
    with pytest.raises(ExperimentFailedError, match="Suggestion has failed") as caught:
        tune(
            self_contained,
            {"lr": search.double(0.001, 0.1), "layers": 2, "opt": "adam"},
            backend="kubernetes",
            client=client,
            polling_interval=0.001,
            verbose=False,
        )
    assert caught.value.result is not None and caught.value.result.trials == ()
    cluster.on_get = None
    with pytest.raises(WaitTimeoutError, match="keeps running on the cluster"):
        tune(
            self_contained,
            {"lr": search.double(0.001, 0.1), "layers": 2, "opt": "adam"},
            backend="kubernetes",
            client=client,
            polling_interval=0.001,
            timeout=0.01,
            verbose=False,
        )


def test_tune_on_the_cluster_without_results(client: Client, cluster: FakeCustomObjects) -> None:
    def end(ns: str, name: str) -> None:
        experiment = cluster.objects[("experiments", ns, name)]
        experiment["status"] = {
            "conditions": [_condition("Succeeded", "ExperimentMaxTrialsReached", "done")]
        }

    cluster.on_get = end
    with pytest.raises(NoResultError, match="no successful trial: none reported the objective"):
        tune(
            self_contained,
            {"lr": search.double(0.001, 0.1), "layers": 2, "opt": "adam"},
            backend="kubernetes",
            client=client,
            polling_interval=0.001,
            verbose=False,
        )


def test_an_unknown_backend_is_rejected() -> None:
    with pytest.raises(InvalidArgumentError, match="backend must be"):
        Client("yarn")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="backend must be"):
        tune(self_contained, {"lr": search.double(0, 1)}, backend="yarn")  # type: ignore[arg-type]


def test_a_missing_kube_config_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="Kubernetes configuration"):
        Client("kubernetes", config_file=str(tmp_path / "no-such-kubeconfig"))


def test_tune_on_the_cluster_sends_seeds_as_annotations(
    client: Client, cluster: FakeCustomObjects
) -> None:
    """enqueue and warm_start (an experiment name) travel as the Experiment's annotations,
    which tunery's operator applies and Katib ignores."""
    result = tune(
        self_contained,
        {"lr": search.double(0.001, 0.1), "layers": 2, "opt": "adam"},
        backend="kubernetes",
        client=client,
        wait=False,
        verbose=False,
        enqueue=[{"lr": 0.05}, {"lr": "0.01"}],
        warm_start="earlier",
    )
    body = cluster.objects[("experiments", "team", result.experiment_name)]
    annotations = body["metadata"]["annotations"]
    assert json.loads(annotations["tunery.io/enqueue"]) == [{"lr": 0.05}, {"lr": "0.01"}]
    assert annotations["tunery.io/warm-start"] == "earlier"
    with pytest.raises(InvalidArgumentError, match=r"enqueue\[0\]\.lr: 0\.5: 0\.5 is outside"):
        tune(
            self_contained,
            {"lr": search.double(0.001, 0.1)},
            backend="kubernetes",
            client=client,
            wait=False,
            verbose=False,
            enqueue=[{"lr": 0.5}],
        )
    with pytest.raises(InvalidArgumentError, match="warm_start takes the name"):
        tune(
            self_contained,
            {"lr": search.double(0.001, 0.1)},
            backend="kubernetes",
            client=client,
            wait=False,
            verbose=False,
            warm_start=[({"lr": 0.05}, 1.0)],
        )
