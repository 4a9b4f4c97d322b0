"""GrpcSuggestionClient outages: the first-contact limit, then backoff that never blocks the
reconcile loop, then giving up past the outage limit; and how the reconciler takes each."""

from __future__ import annotations

import socket
import time
from concurrent import futures

import grpc
import pytest

from controller.clients import (
    FIRST_CONTACT_LIMIT_S,
    GrpcSuggestionClient,
    ServiceCallError,
    ServiceUnavailableError,
)
from tunery.api import api_pb2, api_pb2_grpc
from tunery.retry import DEFAULT_OUTAGE_LIMIT_S, RetryPolicy


def refused_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    return sock


class _Accepting(api_pb2_grpc.SuggestionServicer):
    """Accepts any settings; enough to tell whether the server answers."""

    def ValidateAlgorithmSettings(self, request, context):
        return api_pb2.ValidateAlgorithmSettingsReply()

    def GetSuggestions(self, request, context):
        return api_pb2.GetSuggestionsReply()


def serve(port: int = 0) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(2))
    api_pb2_grpc.add_SuggestionServicer_to_server(_Accepting(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


def test_the_default_first_contact_limit_fits_in_30_seconds() -> None:
    assert FIRST_CONTACT_LIMIT_S <= 25 and DEFAULT_OUTAGE_LIMIT_S >= 600


def test_nothing_listening_fails_at_the_first_contact_limit_naming_the_endpoint() -> None:
    sock = refused_port()
    port = sock.getsockname()[1]
    client = GrpcSuggestionClient(
        f"127.0.0.1:{port}", name="my-algo", policy=RetryPolicy(limit=1.0)
    )
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as caught:
        client.get_suggestions(api_pb2.GetSuggestionsRequest())
    took = time.monotonic() - started
    sock.close()
    client.close()
    assert 0.9 <= took < 3, took
    assert str(caught.value).startswith(f"Suggestion service my-algo at 127.0.0.1:{port}")
    assert "did not answer within 1 s" in str(caught.value)
    assert not caught.value.retryable


def test_an_outage_after_contact_backs_off_without_blocking_then_gives_up() -> None:
    server, port = serve()
    now = [0.0]
    client = GrpcSuggestionClient(
        f"127.0.0.1:{port}", policy=RetryPolicy(limit=10.0), clock=lambda: now[0]
    )
    client.validate_algorithm_settings(api_pb2.ValidateAlgorithmSettingsRequest())
    server.stop(grace=None).wait()
    with pytest.raises(ServiceCallError) as first:
        client.get_suggestions(api_pb2.GetSuggestionsRequest())
    assert first.value.retryable and first.value.code is grpc.StatusCode.UNAVAILABLE
    started = time.monotonic()
    with pytest.raises(ServiceCallError, match="waiting to retry"):  # before the next try
        client.get_suggestions(api_pb2.GetSuggestionsRequest())
    assert time.monotonic() - started < 0.1
    now[0] = 11.0
    with pytest.raises(ServiceUnavailableError, match="longer than the outage limit of 10 s"):
        client.get_suggestions(api_pb2.GetSuggestionsRequest())
    client.close()


def test_the_server_coming_back_ends_the_outage() -> None:
    server, port = serve()
    now = [0.0]
    client = GrpcSuggestionClient(
        f"127.0.0.1:{port}", policy=RetryPolicy(limit=60.0), clock=lambda: now[0]
    )
    client.validate_algorithm_settings(api_pb2.ValidateAlgorithmSettingsRequest())
    server.stop(grace=None).wait()
    with pytest.raises(ServiceCallError):
        client.get_suggestions(api_pb2.GetSuggestionsRequest())
    server, _ = serve(port)
    try:
        now[0] = 30.0
        deadline = time.monotonic() + 10
        while True:  # the channel reconnects within its (shortened) reconnect backoff
            try:
                client.get_suggestions(api_pb2.GetSuggestionsRequest())
                break
            except ServiceCallError:
                assert time.monotonic() < deadline, "the client never reconnected"
                now[0] += 5
                time.sleep(0.2)
        assert client._outage is None
    finally:
        server.stop(grace=None)
        client.close()
