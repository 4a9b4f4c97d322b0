"""DBManager over a store keyed by namespace: Katib's wire names a trial without one."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from metrics_collector.dbmanager import NAMESPACE_METADATA_KEY, create_dbmanager_server
from tunery.api import api_pb2, api_pb2_grpc
from tunery.store import Store, TrialRecord

STAMP = "2024-05-17T12:00:00Z"


@pytest.fixture
def stub(store: Store) -> Iterator[api_pb2_grpc.DBManagerStub]:
    server, port = create_dbmanager_server("127.0.0.1:0", store, max_workers=2)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield api_pb2_grpc.DBManagerStub(channel)
    finally:
        channel.close()
        server.stop(None).wait()


def report(stub, trial: str, value: str, namespace: str | None = None) -> None:  # type: ignore[no-untyped-def]
    log = api_pb2.MetricLog(time_stamp=STAMP, metric=api_pb2.Metric(name="loss", value=value))
    stub.ReportObservationLog(
        api_pb2.ReportObservationLogRequest(
            trial_name=trial, observation_log=api_pb2.ObservationLog(metric_logs=[log])
        ),
        metadata=[(NAMESPACE_METADATA_KEY, namespace)] if namespace else None,
        timeout=10,
    )


def values(stub, trial: str, namespace: str | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    reply = stub.GetObservationLog(
        api_pb2.GetObservationLogRequest(trial_name=trial),
        metadata=[(NAMESPACE_METADATA_KEY, namespace)] if namespace else None,
        timeout=10,
    )
    return [m.metric.value for m in reply.observation_log.metric_logs]


def _mnist(store: Store, namespace: str, *trials: str) -> Store:
    view = store.in_namespace(namespace)
    view.create_experiment("mnist", {})
    for name in trials:
        view.create_trial(TrialRecord(name, "mnist", {}))
    return view


def test_a_trial_is_found_in_its_one_namespace(store: Store, stub) -> None:  # type: ignore[no-untyped-def]
    a = _mnist(store, "a", "mnist-x1")
    b = _mnist(store, "b", "mnist-y1")
    report(stub, "mnist-x1", "0.5")
    report(stub, "mnist-y1", "0.7")
    assert [o.value for o in a.get_observations("mnist-x1")] == ["0.5"]
    assert [o.value for o in b.get_observations("mnist-y1")] == ["0.7"]
    assert values(stub, "mnist-x1") == ["0.5"]
    report(stub, "unknown", "0.1")  # no namespace holds it: the server's own (default)
    assert [o.value for o in store.get_observations("unknown")] == ["0.1"]
    stub.DeleteObservationLog(api_pb2.DeleteObservationLogRequest(trial_name="mnist-y1"))
    assert b.get_observations("mnist-y1") == []
    assert len(a.get_observations("mnist-x1")) == 1


def test_an_ambiguous_name_is_refused_naming_the_namespaces_unless_given(
    store: Store,
    stub,  # type: ignore[no-untyped-def]
) -> None:
    a = _mnist(store, "a", "t1")
    b = _mnist(store, "b", "t1")
    with pytest.raises(grpc.RpcError) as raised:
        report(stub, "t1", "0.5")
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "namespaces a, b" in raised.value.details()
    assert NAMESPACE_METADATA_KEY in raised.value.details()
    with pytest.raises(grpc.RpcError, match="namespaces a, b"):
        values(stub, "t1")
    assert a.get_observations("t1") == [] and b.get_observations("t1") == []
    report(stub, "t1", "0.5", namespace="b")
    assert values(stub, "t1", namespace="b") == ["0.5"]
    assert values(stub, "t1", namespace="a") == []
