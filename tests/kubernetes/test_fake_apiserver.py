"""The fake API server answers as kube-apiserver does where tunery's operator, kopf and Katib's
SDK depend on it (see ``fake_apiserver``'s docstring): each test sends what a client sends and
checks the status code, the body and the watch stream a real server would produce."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fake_cluster import FakeCluster
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

EXPERIMENTS = "/apis/kubeflow.org/v1beta1/namespaces/default/experiments"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeCluster]:
    with FakeCluster() as cluster:
        yield cluster


class Http:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        data = None if body is None else json.dumps(body)
        headers = kw.pop("headers", {"Content-Type": "application/json"})
        return requests.request(
            method, self.url + path, data=data, headers=headers, timeout=10, **kw
        )


@pytest.fixture()
def http(server: FakeCluster) -> Http:
    return Http(server.url)


def configmap(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **extra},
        "data": {"k": "v"},
    }


def experiment(name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parameters": [
                {
                    "name": "lr",
                    "parameterType": "double",
                    "feasibleSpace": {"min": "0.1", "max": "0.2"},
                }
            ],
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialSpec": {"kind": "Job"},
                "trialParameters": [{"name": "lr", "reference": "lr"}],
            },
        },
    }
    body["spec"].update(spec)
    return body


def test_create_is_201_with_server_metadata_and_a_taken_name_is_409(http: Http) -> None:
    created = http("POST", CONFIGMAPS, configmap("cm-create"))
    assert created.status_code == 201
    meta = created.json()["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert meta["namespace"] == "default"
    again = http("POST", CONFIGMAPS, configmap("cm-create"))
    assert again.status_code == 409 and again.json()["reason"] == "AlreadyExists"
    generated = http("POST", CONFIGMAPS, {**configmap(""), "metadata": {"generateName": "cm-"}})
    assert generated.status_code == 201 and generated.json()["metadata"]["name"].startswith("cm-")


def test_typed_clients_get_the_created_object(server: FakeCluster) -> None:
    core = k8s_client.CoreV1Api(server.api_client())
    created = core.create_namespaced_config_map("default", configmap("cm-typed"))
    assert created is not None and created.metadata.uid
    with pytest.raises(ApiException) as missing:
        core.create_namespaced_config_map("nowhere", configmap("cm-typed"))
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["message"] == 'namespaces "nowhere" not found'


def test_update_needs_the_current_resource_version(http: Http) -> None:
    obj = http("POST", CONFIGMAPS, configmap("cm-put")).json()
    stale = json.loads(json.dumps(obj))
    obj["data"] = {"k": "w"}
    assert http("PUT", f"{CONFIGMAPS}/cm-put", obj).status_code == 200
    stale["data"] = {"k": "x"}
    conflict = http("PUT", f"{CONFIGMAPS}/cm-put", stale)
    assert conflict.status_code == 409 and conflict.json()["reason"] == "Conflict"
    del stale["metadata"]["resourceVersion"]
    assert http("PUT", f"{CONFIGMAPS}/cm-put", stale).status_code == 422
    patch = {"metadata": {"resourceVersion": "1"}, "data": {"k": "y"}}  # a precondition
    assert http("PATCH", f"{CONFIGMAPS}/cm-put", patch, headers=MERGE).status_code == 409


def test_a_failed_json_patch_test_is_422_and_changes_nothing(http: Http) -> None:
    obj = http("POST", CONFIGMAPS, configmap("cm-jp", finalizers=["a/b"])).json()
    ops = [
        {"op": "test", "path": "/metadata/finalizers/0", "value": "other"},
        {"op": "remove", "path": "/metadata/finalizers/0"},
    ]
    failed = http("PATCH", f"{CONFIGMAPS}/cm-jp", ops, headers=JSON_PATCH)
    assert failed.status_code == 422 and failed.json()["reason"] == "Invalid"
    after = http("GET", f"{CONFIGMAPS}/cm-jp").json()
    assert after["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    ops[0]["value"] = "a/b"
    assert http("PATCH", f"{CONFIGMAPS}/cm-jp", ops, headers=JSON_PATCH).status_code == 200


def test_a_no_op_patch_keeps_the_resource_version(http: Http) -> None:
    obj = http("POST", CONFIGMAPS, configmap("cm-noop")).json()
    same = http("PATCH", f"{CONFIGMAPS}/cm-noop", {"data": {"k": "v"}}, headers=MERGE).json()
    assert same["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_discovery_serves_core_batch_apiextensions_and_the_crds(http: Http) -> None:
    groups = {g["name"] for g in http("GET", "/apis").json()["groups"]}
    assert {"batch", "apiextensions.k8s.io", "kubeflow.org", "coordination.k8s.io"} <= groups
    assert http("GET", "/api").json()["versions"] == ["v1"]
    core = {r["name"]: r for r in http("GET", "/api/v1").json()["resources"]}
    assert core["namespaces"]["namespaced"] is False and core["configmaps"]["namespaced"]
    kubeflow = {r["name"] for r in http("GET", "/apis/kubeflow.org/v1beta1").json()["resources"]}
    assert {"experiments", "experiments/status", "trials", "suggestions"} <= kubeflow
    assert "jobs/status" in {r["name"] for r in http("GET", "/apis/batch/v1").json()["resources"]}
    crds = http("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions").json()["items"]
    established = {c["metadata"]["name"]: c["status"]["conditions"] for c in crds}
    assert any(c["type"] == "Established" for c in established["experiments.kubeflow.org"])


def test_a_new_crd_is_served_and_its_removal_takes_its_objects(http: Http) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"size": {"type": "integer", "minimum": 1}},
                        }
                    },
                }
            ],
        },
    }
    assert (
        http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd).status_code
        == 201
    )
    path = "/apis/example.com/v1/namespaces/default/widgets"
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "size": 0,
    }
    small = http("POST", path, widget)
    assert small.status_code == 422 and small.json()["details"]["causes"][0]["field"] == "size"
    widget["size"] = 2
    assert http("POST", path, widget).status_code == 201
    http("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert http("GET", path).status_code == 404
    assert "example.com" not in {g["name"] for g in http("GET", "/apis").json()["groups"]}


def test_custom_resources_are_pruned_defaulted_and_validated(http: Http) -> None:
    body = experiment("exp-schema", unknownField=1)
    body["status"] = {"trials": 9}
    created = http("POST", EXPERIMENTS, body)
    assert created.status_code == 201, created.text
    spec = created.json()["spec"]
    assert "unknownField" not in spec  # pruned
    assert spec["parallelTrialCount"] == 3 and spec["resumePolicy"] == "Never"  # defaulted
    assert spec["parameters"][0]["feasibleSpace"]["distribution"] == "uniform"
    assert "status" not in created.json()  # the status subresource owns status
    bad = http(
        "POST",
        EXPERIMENTS,
        experiment("exp-bad", parallelTrialCount="two", resumePolicy="Sometimes"),
    )
    assert bad.status_code == 422
    causes = {c["field"]: c for c in bad.json()["details"]["causes"]}
    assert causes["spec.parallelTrialCount"]["reason"] == "FieldValueTypeInvalid"
    assert causes["spec.resumePolicy"]["reason"] == "FieldValueNotSupported"
    patched = http(
        "PATCH", f"{EXPERIMENTS}/exp-schema", {"spec": {"maxTrialCount": "x"}}, headers=MERGE
    )
    assert patched.status_code == 422
    smp = http(
        "PATCH",
        f"{EXPERIMENTS}/exp-schema",
        {"spec": {}},
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert smp.status_code == 415


def test_the_status_subresource(http: Http) -> None:
    created = http("POST", EXPERIMENTS, experiment("exp-status")).json()
    main = http(
        "PATCH",
        f"{EXPERIMENTS}/exp-status",
        {"status": {"trials": 1}, "spec": {"maxTrialCount": 7}},
        headers=MERGE,
    ).json()
    assert "status" not in main and main["spec"]["maxTrialCount"] == 7
    assert main["metadata"]["generation"] == created["metadata"]["generation"] + 1
    status = http(
        "PATCH",
        f"{EXPERIMENTS}/exp-status/status",
        {"status": {"trials": 2}, "spec": {"maxTrialCount": 1}},
        headers=MERGE,
    ).json()
    assert status["status"]["trials"] == 2 and status["spec"]["maxTrialCount"] == 7
    assert status["metadata"]["generation"] == main["metadata"]["generation"]


def _watch(http: Http, path: str, query: str, stop_after: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    with requests.get(f"{http.url}{path}?watch=true&{query}", stream=True, timeout=10) as response:
        for line in response.iter_lines():
            if line:
                events.append(json.loads(line))
            if len(events) >= stop_after:
                break
    return events


def test_watches_resume_from_a_resource_version_and_send_bookmarks(http: Http) -> None:
    listing = http("GET", CONFIGMAPS, params={"labelSelector": "watch=me"}).json()
    since = listing["metadata"]["resourceVersion"]
    http("POST", CONFIGMAPS, configmap("cm-w1", labels={"watch": "me"}))
    http("POST", CONFIGMAPS, configmap("cm-other"))
    http("DELETE", f"{CONFIGMAPS}/cm-w1")
    events = _watch(
        http,
        CONFIGMAPS,
        f"resourceVersion={since}&labelSelector=watch%3Dme&allowWatchBookmarks=true",
        stop_after=3,
    )
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [
        ("ADDED", "cm-w1"),
        ("DELETED", "cm-w1"),
        ("BOOKMARK", None),
    ]
    assert int(events[2]["object"]["metadata"]["resourceVersion"]) >= int(since) + 3
    fresh = _watch(http, CONFIGMAPS, "fieldSelector=metadata.name%3Dcm-other", stop_after=1)
    assert fresh[0]["type"] == "ADDED" and fresh[0]["object"]["metadata"]["name"] == "cm-other"
    timed = requests.get(
        f"{http.url}{CONFIGMAPS}?watch=true&timeoutSeconds=1&resourceVersion={10**9}", timeout=10
    )
    assert timed.status_code == 200 and timed.text == ""  # ends after timeoutSeconds


def test_finalizers_hold_a_deletion_and_their_release_collects_the_dependents(http: Http) -> None:
    owner = http("POST", CONFIGMAPS, configmap("owner", finalizers=["x.io/hold"])).json()
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    http("POST", CONFIGMAPS, configmap("child", ownerReferences=[ref]))
    grandchild_ref = {
        **ref,
        "name": "child",
        "uid": http("GET", f"{CONFIGMAPS}/child").json()["metadata"]["uid"],
    }
    http("POST", CONFIGMAPS, configmap("grandchild", ownerReferences=[grandchild_ref]))
    deleting = http("DELETE", f"{CONFIGMAPS}/owner").json()
    assert deleting["metadata"]["deletionTimestamp"]
    assert http("GET", f"{CONFIGMAPS}/child").status_code == 200  # the owner still exists
    added = http(
        "PATCH",
        f"{CONFIGMAPS}/owner",
        {"metadata": {"finalizers": ["x.io/hold", "y.io/new"]}},
        headers=MERGE,
    )
    assert added.status_code == 422  # no new finalizers while deleting
    released = http(
        "PATCH", f"{CONFIGMAPS}/owner", {"metadata": {"finalizers": None}}, headers=MERGE
    )
    assert released.status_code == 200
    for name in ("owner", "child", "grandchild"):
        assert http("GET", f"{CONFIGMAPS}/{name}").status_code == 404, name


def test_foreground_and_orphan_propagation(http: Http) -> None:
    owner = http("POST", CONFIGMAPS, configmap("fg-owner")).json()
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "fg-owner",
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    http("POST", CONFIGMAPS, configmap("fg-child", ownerReferences=[ref], finalizers=["z/hold"]))
    deleting = http("DELETE", f"{CONFIGMAPS}/fg-owner", {"propagationPolicy": "Foreground"}).json()
    assert "foregroundDeletion" in deleting["metadata"]["finalizers"]
    assert http("GET", f"{CONFIGMAPS}/fg-child").json()["metadata"]["deletionTimestamp"]
    http("PATCH", f"{CONFIGMAPS}/fg-child", {"metadata": {"finalizers": None}}, headers=MERGE)
    assert http("GET", f"{CONFIGMAPS}/fg-owner").status_code == 404  # then the owner goes

    owner = http("POST", CONFIGMAPS, configmap("or-owner")).json()
    ref = {**ref, "name": "or-owner", "uid": owner["metadata"]["uid"]}
    http("POST", CONFIGMAPS, configmap("or-child", ownerReferences=[ref]))
    http("DELETE", f"{CONFIGMAPS}/or-owner", {"propagationPolicy": "Orphan"})
    orphan = http("GET", f"{CONFIGMAPS}/or-child").json()
    assert "ownerReferences" not in orphan["metadata"]


def test_delete_preconditions(http: Http) -> None:
    obj = http("POST", CONFIGMAPS, configmap("cm-pre")).json()
    wrong = http("DELETE", f"{CONFIGMAPS}/cm-pre", {"preconditions": {"uid": "nope"}})
    assert wrong.status_code == 409
    right = http(
        "DELETE",
        f"{CONFIGMAPS}/cm-pre",
        {"preconditions": {"resourceVersion": obj["metadata"]["resourceVersion"]}},
    )
    assert right.status_code == 200 and http("GET", f"{CONFIGMAPS}/cm-pre").status_code == 404


def test_built_in_kinds_are_validated_against_the_kubernetes_schema(http: Http) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "cpu": 1}]}}},
    }
    refused = http("POST", "/apis/batch/v1/namespaces/default/jobs", job)
    assert refused.status_code == 422 and refused.json()["reason"] == "Invalid"


def test_the_server_runs_while_a_watch_is_open(server: FakeCluster, http: Http) -> None:
    done = threading.Event()

    def hold() -> None:
        _watch(http, CONFIGMAPS, "resourceVersion=999999999&timeoutSeconds=2", stop_after=1)
        done.set()

    threading.Thread(target=hold, daemon=True).start()
    assert http("GET", "/version").status_code == 200
    assert done.wait(5)


def test_kubectl_get_gets_a_table_with_the_crd_columns(http: Http) -> None:
    http("POST", EXPERIMENTS, experiment("exp-table"))
    status = {
        "conditions": [
            {"type": "Created", "status": "True"},
            {"type": "Running", "status": "True"},
        ],
        "bestObjectiveValue": "0.3",
    }
    http("PATCH", f"{EXPERIMENTS}/exp-table/status", {"status": status}, headers=MERGE)
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
    got = http("GET", f"{EXPERIMENTS}/exp-table", headers=accept).json()
    assert got["kind"] == "Table"
    names = [c["name"] for c in got["columnDefinitions"]]
    assert names[:4] == ["Name", "Type", "Status", "Age"]  # Katib's columns first (issue 16)
    row = dict(zip(names, got["rows"][0]["cells"], strict=True))
    assert (row["Name"], row["Type"], row["Status"], row["Best"]) == (
        "exp-table",
        "Running",
        "True",
        "0.3",
    )
    assert row["Age"].endswith("s")
    plain = http("GET", CONFIGMAPS, headers=accept).json()
    assert [c["name"] for c in plain["columnDefinitions"]] == ["Name", "Age"]


def test_openapi_v3_names_each_group_version_and_the_write_parameters(http: Http) -> None:
    listed = http("GET", "/openapi/v3").json()["paths"]
    assert {"api/v1", "apis/batch/v1", "apis/kubeflow.org/v1beta1"} <= set(listed)
    url = listed["apis/kubeflow.org/v1beta1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/kubeflow.org/v1beta1?hash=")
    document = http("GET", url).json()
    schema = document["components"]["schemas"]["org.kubeflow.v1beta1.Experiment"]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "kubeflow.org", "version": "v1beta1", "kind": "Experiment"}
    ]
    assert "spec" in schema["properties"]
    item = "/apis/kubeflow.org/v1beta1/namespaces/{namespace}/experiments/{name}"
    patch = document["paths"][item]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Experiment"
    assert {"name": "fieldValidation", "in": "query"}.items() <= patch["parameters"][2].items()
    # no strategic merge for a custom resource: kubectl sends a JSON merge patch
    assert set(patch["requestBody"]["content"]) == {
        "application/json-patch+json",
        "application/merge-patch+json",
    }
    assert http("GET", "/openapi/v3/apis/nowhere.io/v1").status_code == 404
