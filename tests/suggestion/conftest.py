"""Fixtures for the suggestion service tests: a live gRPC server with a connected stub."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from suggestion.server import create_suggestion_server
from suggestion.service import SuggestionService
from tunery.api import api_pb2_grpc

from .helpers import Server


@pytest.fixture
def server() -> Iterator[Server]:
    """A real Suggestion server on an ephemeral port, with a connected stub."""
    service = SuggestionService()
    srv, port = create_suggestion_server("localhost:0", service=service)
    srv.start()
    channel = grpc.insecure_channel(f"localhost:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield Server(port, service, channel, api_pb2_grpc.SuggestionStub(channel))
    finally:
        channel.close()
        srv.stop(None).wait()
