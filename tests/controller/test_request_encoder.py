"""controller.protos.SuggestionRequestEncoder: the incrementally built request is byte for
byte protobuf's serialisation of Katib's full request, trials are encoded once per change, and
both clients send it as it is (in-process and over gRPC)."""

from __future__ import annotations

import dataclasses
from concurrent import futures
from typing import Any

import grpc
import pytest

from controller import protos
from controller.clients import GrpcSuggestionClient, InProcessSuggestionClient
from tunery.api import api_pb2, api_pb2_grpc
from tunery.store.base import TrialRecord
from tunery.trials import TrialCondition

SPEC: dict[str, Any] = {
    "objective": {"type": "minimize", "objectiveMetricName": "loss"},
    "algorithm": {"algorithmName": "random"},
    "parameters": [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
    ],
    "parallelTrialCount": 2,
    "maxTrialCount": 10,
}


def _trial(name: str, condition: TrialCondition = TrialCondition.CREATED) -> TrialRecord:
    return TrialRecord(
        name=name, experiment_name="e", assignment={"x": "0.5"}, condition=condition
    )


def _done(trial: TrialRecord, condition: TrialCondition, metrics: bool = True) -> TrialRecord:
    observation = {"metrics": [{"name": "loss", "min": "1", "max": "2", "latest": "1.5"}]}
    return dataclasses.replace(
        trial, condition=condition, observation=observation if metrics else {}
    )


def test_the_encoding_equals_the_full_request_after_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoder = protos.SuggestionRequestEncoder("e")
    current = {n: _trial(n) for n in ("a", "b", "c", "d")}
    encoder.apply(list(current.values()), SPEC)
    changes = [
        _done(current["a"], TrialCondition.SUCCEEDED),
        _done(current["b"], TrialCondition.METRICS_UNAVAILABLE),  # not sent
        _done(current["c"], TrialCondition.EARLY_STOPPED, metrics=False),  # not sent (yet)
        _trial("e"),
    ]
    encoded = []
    real = protos.trial_proto
    monkeypatch.setattr(protos, "trial_proto", lambda t, o: encoded.append(t.name) or real(t, o))
    encoder.apply(changes, SPEC)
    assert encoded == ["a", "e"]  # only what changed and is sent (b and c are not)
    for t in changes:
        current[t.name] = t
    full = protos.suggestions_request("e", SPEC, list(current.values()), 2)
    assert encoder.encode(SPEC, 2) == full.SerializeToString()
    later = _done(current["c"], TrialCondition.EARLY_STOPPED)  # its metrics arrive: now sent
    encoder.apply([later], SPEC)
    current["c"] = later
    full = protos.suggestions_request("e", SPEC, list(current.values()), 1)
    assert encoder.encode(SPEC, 1) == full.SerializeToString()
    assert [t.name for t in full.trials] == ["a", "c", "d", "e"]  # creation order kept


class _Recording(api_pb2_grpc.SuggestionServicer):
    def __init__(self) -> None:
        self.requests: list[api_pb2.GetSuggestionsRequest] = []

    def GetSuggestions(self, request: Any, context: Any) -> api_pb2.GetSuggestionsReply:
        self.requests.append(request)
        reply = api_pb2.GetSuggestionsReply()
        for _ in range(request.current_request_number):
            reply.parameter_assignments.add().assignments.add(name="x", value="0.1")
        return reply


def test_both_clients_send_the_encoded_request() -> None:
    encoder = protos.SuggestionRequestEncoder("e")
    encoder.apply([_done(_trial("a"), TrialCondition.SUCCEEDED)], SPEC)
    data = encoder.encode(SPEC, 2)
    local = _Recording()  # a servicer without get_suggestions_wire: decoded for it
    reply = InProcessSuggestionClient(local).get_suggestions_wire(data)
    assert len(reply.parameter_assignments) == 2
    assert local.requests[0].SerializeToString() == data
    remote = _Recording()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    api_pb2_grpc.add_SuggestionServicer_to_server(remote, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        client = GrpcSuggestionClient(f"127.0.0.1:{port}")
        try:
            assert len(client.get_suggestions_wire(data).parameter_assignments) == 2
        finally:
            client.close()
    finally:
        server.stop(None)
    assert remote.requests[0].SerializeToString() == data
    assert [t.name for t in remote.requests[0].trials] == ["a"]
