"""``tunery.rpc``: error details are truncated on every service; the default bind is loopback."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from click.testing import CliRunner

from earlystop.server import create_earlystop_server
from tunery import serving
from tunery.api import api_pb2, api_pb2_grpc
from tunery.cli import main
from tunery.rpc import MAX_DETAILS_CHARS, truncate_details


def test_truncate_details() -> None:
    assert truncate_details(None) is None
    assert truncate_details("short") == "short"
    exact = "x" * MAX_DETAILS_CHARS
    assert truncate_details(exact) == exact
    cut = truncate_details("y" * 10_000)
    assert cut is not None and len(cut) == MAX_DETAILS_CHARS
    assert cut.endswith("... [10000 characters, truncated]")


@pytest.fixture
def earlystop() -> Iterator[api_pb2_grpc.EarlyStoppingStub]:
    server, port = create_earlystop_server("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield api_pb2_grpc.EarlyStoppingStub(channel)
    channel.close()
    server.stop(0)


def test_earlystop_details_are_truncated(earlystop: api_pb2_grpc.EarlyStoppingStub) -> None:
    name = "m" * (10 * 2**20)
    request = api_pb2.ValidateEarlyStoppingSettingsRequest(
        early_stopping=api_pb2.EarlyStoppingSpec(algorithm_name=name)
    )
    with pytest.raises(grpc.RpcError) as info:
        earlystop.ValidateEarlyStoppingSettings(request, timeout=30)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    details = info.value.details()  # type: ignore[attr-defined]
    assert details.startswith("unknown algorithm name mmm")
    assert len(details) <= MAX_DETAILS_CHARS


def test_servers_bind_loopback_by_default() -> None:
    assert serving.DEFAULT_HOST == "127.0.0.1"
    for service in ("suggestion", "earlystop", "dbmanager"):
        result = CliRunner().invoke(main, ["serve", service, "--help"])
        assert result.exit_code == 0
        text = " ".join(result.output.split())
        assert "--host TEXT Address to bind" in text and "[default: 127.0.0.1]" in text
        assert "--tls-client-ca" in text
