"""DBManager service: Katib-client round trips on SQLite, PostgreSQL and MariaDB; errors."""

from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from metrics_collector.collector import TrialCollector
from metrics_collector.dbclient import DBManagerClient, default_dbmanager_address
from metrics_collector.dbmanager import create_dbmanager_server, katib_db_url
from metrics_collector.parsers import TextParser
from tunery.api import api_pb2, api_pb2_grpc
from tunery.store.base import Store
from tunery.store.errors import StoreUnavailableError
from tunery.trials import Objective, ObjectiveType

ROOT = Path(__file__).resolve().parents[2]


def metric_log(name: str, value: str, stamp: str) -> api_pb2.MetricLog:
    return api_pb2.MetricLog(time_stamp=stamp, metric=api_pb2.Metric(name=name, value=value))


def report(stub, trial: str, *logs: api_pb2.MetricLog) -> None:
    stub.ReportObservationLog(
        api_pb2.ReportObservationLogRequest(
            trial_name=trial, observation_log=api_pb2.ObservationLog(metric_logs=list(logs))
        ),
        timeout=10,
    )


def get(
    stub, trial: str, metric: str = "", start: str = "", end: str = ""
) -> list[tuple[str, str, str]]:
    reply = stub.GetObservationLog(
        api_pb2.GetObservationLogRequest(
            trial_name=trial, metric_name=metric, start_time=start, end_time=end
        ),
        timeout=10,
    )
    return [
        (m.time_stamp, m.metric.name, m.metric.value) for m in reply.observation_log.metric_logs
    ]


class Served:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.server, self.port = create_dbmanager_server("127.0.0.1:0", store, max_workers=4)
        self.server.start()
        self.address = f"127.0.0.1:{self.port}"
        self.channel = grpc.insecure_channel(self.address)
        self.stub = api_pb2_grpc.DBManagerStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(None).wait()


@pytest.fixture
def served(store: Store) -> Iterator[Served]:
    s = Served(store)
    yield s
    s.close()


@pytest.fixture
def served_memory(memory_store) -> Iterator[Served]:
    s = Served(memory_store)
    yield s
    s.close()


def test_katib_client_round_trip(served: Served) -> None:
    stub = served.stub
    report(
        stub,
        "trial-a",
        metric_log("loss", "0.5", "2024-05-01T12:00:00Z"),
        metric_log("loss", "0.4", "2024-05-01T12:00:01.123456789Z"),
        metric_log("accuracy", "0.9", "2024-05-01T14:00:02+02:00"),
        metric_log("loss", "0.3", ""),  # Katib skips logs without a time stamp
        metric_log("loss", "unavailable", "0001-01-01T00:00:00Z"),
    )
    report(stub, "trial-b", metric_log("loss", "9", "2024-05-01T12:00:00Z"))
    assert get(stub, "trial-a") == [
        ("0001-01-01T00:00:00Z", "loss", "unavailable"),
        ("2024-05-01T12:00:00Z", "loss", "0.5"),
        ("2024-05-01T12:00:01.123456Z", "loss", "0.4"),
        ("2024-05-01T12:00:02Z", "accuracy", "0.9"),
    ]
    assert [v for _, _, v in get(stub, "trial-a", "loss")] == ["unavailable", "0.5", "0.4"]
    in_range = get(stub, "trial-a", "", "2024-05-01T12:00:00Z", "2024-05-01T12:00:01.123456Z")
    assert [v for _, _, v in in_range] == ["0.5", "0.4"]  # bounds are inclusive
    assert get(stub, "no-such-trial") == []
    # Rows keep text and numeric value, and a step: the ordinal per metric, continuing.
    report(stub, "trial-a", metric_log("loss", "0.2", "2024-05-01T12:00:05Z"))
    steps = {
        (o.value, o.step, o.numeric) for o in served.store.get_observations("trial-a", "loss")
    }
    assert steps == {("0.5", 0, 0.5), ("0.4", 1, 0.4), ("unavailable", 2, None), ("0.2", 3, 0.2)}
    stub.DeleteObservationLog(
        api_pb2.DeleteObservationLogRequest(trial_name="trial-a"), timeout=10
    )
    assert get(stub, "trial-a") == []
    assert [v for _, _, v in get(stub, "trial-b")] == ["9"]


def test_bad_requests_are_invalid_argument_and_store_nothing(served: Served) -> None:
    with pytest.raises(grpc.RpcError) as info:
        report(
            served.stub,
            "t",
            metric_log("loss", "1", "2024-05-01T12:00:00Z"),
            metric_log("loss", "2", "yesterday"),
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "observation_log.metric_logs[1].time_stamp" in info.value.details()
    assert "'yesterday'" in info.value.details()
    assert get(served.stub, "t") == []
    for bad in (
        lambda: report(served.stub, "", metric_log("loss", "1", "2024-05-01T12:00:00Z")),
        lambda: report(served.stub, "t", metric_log("", "1", "2024-05-01T12:00:00Z")),
        lambda: get(served.stub, "t", start="2024-05-01"),
        lambda: get(served.stub, ""),
    ):
        with pytest.raises(grpc.RpcError) as info:
            bad()
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert "start_time" in get_error(served, start="2024-05-01")
    with pytest.raises(grpc.RpcError) as info:
        report(served.stub, "t", metric_log("m" * 300, "1", "2024-05-01T12:00:00Z"))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "300 characters" in info.value.details()


def get_error(served: Served, **kwargs: str) -> str:
    try:
        get(served.stub, "t", **kwargs)
    except grpc.RpcError as e:
        return e.details()
    return ""


def test_store_down_is_unavailable(served_memory: Served, memory_store) -> None:
    memory_store.down = True
    with pytest.raises(grpc.RpcError) as info:
        report(served_memory.stub, "t", metric_log("loss", "1", "2024-05-01T12:00:00Z"))
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "database unavailable" in info.value.details()
    client = DBManagerClient(served_memory.address, timeout=5)
    with pytest.raises(StoreUnavailableError):
        client.get_observations("t")
    client.close()


def test_health_follows_the_database(
    served_memory: Served, memory_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunery import serving

    monkeypatch.setattr(serving, "PROBE_INTERVAL_S", 0.0)
    health = health_pb2_grpc.HealthStub(served_memory.channel)

    def status(service: str) -> int:
        return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

    names = ("", "api.v1.beta1.DBManager")
    assert [status(n) for n in names] == [health_pb2.HealthCheckResponse.SERVING] * 2
    memory_store.down = True
    assert [status(n) for n in names] == [health_pb2.HealthCheckResponse.NOT_SERVING] * 2
    # the liveness name answers for the process: an outage must not get the pod restarted
    assert status("tunery.Liveness") == health_pb2.HealthCheckResponse.SERVING
    memory_store.down = False
    assert [status(n) for n in names] == [health_pb2.HealthCheckResponse.SERVING] * 2
    with pytest.raises(grpc.RpcError) as info:
        status("no.such.Service")
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_health_probes_the_database_at_most_once_per_interval(memory_store) -> None:
    from tunery.serving import ProbingHealthServicer

    calls = []

    def probe() -> None:
        calls.append(1)
        memory_store.ping()

    servicer = ProbingHealthServicer(probe, [""])
    assert servicer.refresh() and servicer.refresh() and servicer.refresh()
    assert len(calls) == 1


def test_health_and_reflection(served_memory: Served) -> None:
    health = health_pb2_grpc.HealthStub(served_memory.channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(served_memory.channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert "api.v1.beta1.DBManager" in names


def test_client_and_a_restarted_collector_through_dbmanager(served: Served) -> None:
    objective = Objective(ObjectiveType.MINIMIZE, "loss")
    data = b"".join(b"2024-05-01T12:00:%02dZ loss=%d\n" % (i, i) for i in range(30))
    with DBManagerClient(served.address, timeout=10) as client:
        first = TrialCollector(client, "t", objective, TextParser(["loss"]))
        first.feed(data[: len(data) // 2])
        first.close()
        # A restarted sidecar reads the file from the start again: nothing twice.
        second = TrialCollector(client, "t", objective, TextParser(["loss"]))
        assert second.resume() == 15
        second.feed(data)
        summary = second.finish()
        rows = client.get_observations("t")
    assert collections.Counter(o.value for o in rows) == collections.Counter(
        str(i) for i in range(30)
    )
    assert [o.step for o in rows] == list(range(30))
    assert rows[3].time == dt.datetime(2024, 5, 1, 12, 0, 3, tzinfo=dt.UTC)
    assert summary.objective_value == 0.0


def test_addresses_from_the_environment() -> None:
    assert default_dbmanager_address({}) == "katib-db-manager.kubeflow:6789"
    assert default_dbmanager_address({"KATIB_DB_MANAGER_SERVICE_NAMESPACE": "ml"}) == (
        "katib-db-manager.ml:6789"
    )
    assert default_dbmanager_address(
        {"KATIB_DB_MANAGER_SERVICE_IP": "10.0.0.1", "KATIB_DB_MANAGER_SERVICE_PORT": "7000"}
    ) == ("10.0.0.1:7000")
    assert default_dbmanager_address({"TUNERY_DBMANAGER_ADDRESS": "db:1"}) == "db:1"
    assert katib_db_url({}) is None
    assert katib_db_url({"DB_NAME": "mysql", "DB_PASSWORD": "p@ss"}) == (
        "mysql://root:p%40ss@katib-mysql:3306/katib"
    )
    assert katib_db_url(
        {"DB_NAME": "postgres", "DB_USER": "u", "KATIB_POSTGRESQL_DB_HOST": "pg"}
    ) == ("postgresql://u@pg:5432/katib?sslmode=disable")
    with pytest.raises(ValueError, match="DB_NAME must be mysql or postgres"):
        katib_db_url({"DB_NAME": "oracle"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    code = f"from metrics_collector.dbmanager import serve; serve('127.0.0.1', {port}, {url!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = api_pb2_grpc.DBManagerStub(channel)
            report(stub, "t", metric_log("loss", "1", "2024-05-01T12:00:00Z"))
            assert [v for _, _, v in get(stub, "t")] == ["1"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
