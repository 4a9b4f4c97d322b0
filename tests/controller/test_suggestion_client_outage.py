"""GrpcSuggestionClient outages: the first-contact limit, then backoff that never blocks the
reconcile loop, then giving up past the outage limit; and how the reconciler takes each."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
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


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _answer_404(conn: socket.socket) -> None:
    """Speak just enough HTTP/2 to answer each request 404 (as a web server or proxy would)."""
    data = b""
    with contextlib.suppress(OSError), conn:
        conn.sendall(_frame(4, 0, 0))  # SETTINGS
        while chunk := conn.recv(65536):
            data += chunk
            if data.startswith(b"PRI * HTTP/2.0"):
                data = data[24:]  # the client preface
            while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
                size, kind, flags = int.from_bytes(data[:3], "big"), data[3], data[4]
                stream = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
                payload, data = data[9 : 9 + size], data[9 + size :]
                if kind == 4 and not flags & 1:
                    conn.sendall(_frame(4, 1, 0))  # SETTINGS ack
                elif kind == 6 and not flags & 1:
                    conn.sendall(_frame(6, 1, 0, payload))  # PING ack
                elif kind == 1:  # HEADERS: ":status: 404" (HPACK static index 13), end of stream
                    conn.sendall(_frame(1, 0x5, stream, b"\x8d"))


@contextlib.contextmanager
def http2_server_answering_404() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=_answer_404, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.mark.parametrize("call", ["validate", "get_suggestions"])
def test_an_http_server_at_the_endpoint_is_unavailable_naming_it(call: str) -> None:
    """A wrong address that answers HTTP/2 (a 404) stops the run resumably (exit 3): no retry
    mends it, and it must not fail the experiment as an algorithm's error would."""
    with http2_server_answering_404() as port:
        client = GrpcSuggestionClient(f"127.0.0.1:{port}", name="my-algo")
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as caught:
            if call == "validate":
                client.validate_algorithm_settings(api_pb2.ValidateAlgorithmSettingsRequest())
            else:
                client.get_suggestions(api_pb2.GetSuggestionsRequest())
        client.close()
    assert time.monotonic() - started < 10
    assert str(caught.value) == (
        f"Suggestion service my-algo at 127.0.0.1:{port} answered as an HTTP server, not a gRPC "
        "Suggestion service (Received http2 header with status: 404): is the endpoint right?"
    )
    assert not caught.value.retryable
