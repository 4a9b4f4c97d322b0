"""The collector sidecar names its trial's namespace to the DBManager.

Katib's DBManager wire names a trial without its namespace; tunery's DBManager reads the gRPC
metadata key ``tunery-namespace`` when a trial name is held in several namespaces. The operator
gives every collector it renders ``POD_NAMESPACE`` from the downward API, and the sidecar's
:class:`~metrics_collector.dbclient.DBManagerClient` sends it on every call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.sidecar import CollectorSettings, inject_collector
from metrics_collector.dbclient import DBManagerClient
from metrics_collector.dbmanager import create_dbmanager_server
from metrics_collector.sidecar import Sidecar, SidecarConfig
from tunery.store import Store, TrialRecord, open_store
from tunery.store.errors import StoreError
from tunery.trials import Observation

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Store, str]]:
    store = open_store(f"sqlite:///{tmp_path / 'ns.db'}")
    for namespace in ("a", "b"):  # the same experiment and trial name in two namespaces
        view = store.in_namespace(namespace)
        view.create_experiment("mnist", {})
        view.create_trial(TrialRecord("mnist-x1", "mnist", {}))
    server, port = create_dbmanager_server("127.0.0.1:0", store, max_workers=2)
    server.start()
    try:
        yield store, f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait()


def test_the_client_sends_its_namespace_in_the_metadata(served: tuple[Store, str]) -> None:
    store, address = served
    with DBManagerClient(address, timeout=10, namespace="b") as client:
        client.add_observations("mnist-x1", [Observation.of("loss", "0.25", 0, NOW)])
        assert [o.value for o in client.get_observations("mnist-x1")] == ["0.25"]
    assert [o.value for o in store.in_namespace("b").get_observations("mnist-x1")] == ["0.25"]
    assert store.in_namespace("a").get_observations("mnist-x1") == []
    with (
        DBManagerClient(address, timeout=10) as anonymous,
        pytest.raises(StoreError, match="tunery-namespace"),
    ):  # without it the name is ambiguous
        anonymous.add_observations("mnist-x1", [Observation.of("loss", "0.5", 0, NOW)])


def test_the_rendered_collector_gets_the_namespace_and_the_sidecar_sends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "mnist-x1"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "python", "command": ["python3", "train.py"]},
        ]}}},
    }  # fmt: skip
    spec = {
        "objective": {"type": "minimize", "objectiveMetricName": "loss"},
        "trialTemplate": {"primaryContainerName": "main"},
    }
    for kind in ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric"):
        spec["metricsCollectorSpec"] = {"collector": {"kind": kind}}
        out = inject_collector(
            job,
            trial_name="mnist-x1",
            experiment_name="mnist",
            spec=spec,
            settings=CollectorSettings("tunery:test", db_manager_address="db:6789"),
        )
        (collector,) = out["spec"]["template"]["spec"]["initContainers"]
        env = {e["name"]: e.get("valueFrom") for e in collector["env"]}
        assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}, kind
    monkeypatch.setenv("POD_NAMESPACE", "team-b")
    config = SidecarConfig(
        trial_name="mnist-x1",
        metric_names=("loss",),
        path=Path("unused.log"),
        dbmanager_address="127.0.0.1:1",
    )
    sidecar = Sidecar(config)
    try:
        assert sidecar.client.namespace == "team-b"
    finally:
        sidecar.client.close()
