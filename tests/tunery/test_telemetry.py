"""gRPC server metrics scraped over HTTP: a Suggestion server under concurrent load, and each of
``tunery serve suggestion|earlystop|dbmanager --metrics-port`` as its own process."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from suggestion.service import SuggestionServicer, add_to_server
from tests.suggestion.helpers import experiment
from tunery.api import api_pb2, api_pb2_grpc
from tunery.serving import create_server
from tunery.telemetry import GrpcServerMetrics, serve_metrics

ROOT = Path(__file__).resolve().parents[2]
SUGGESTION = "api.v1.beta1.Suggestion"


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_get_suggestions_under_load_is_counted_and_timed() -> None:
    registry = CollectorRegistry()
    servicer = SuggestionServicer()
    server, port = create_server(
        [lambda s: add_to_server(servicer, s)], "127.0.0.1:0", metrics=GrpcServerMetrics(registry)
    )
    server.start()
    http, http_port = serve_metrics(0, registry=registry)
    url = f"http://127.0.0.1:{http_port}/metrics"
    try:
        before = scrape(url)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = api_pb2_grpc.SuggestionStub(channel)

            def ask(i: int) -> int:
                request = api_pb2.GetSuggestionsRequest(
                    experiment=experiment(name=f"load-{i % 4}"), current_request_number=2
                )
                return len(stub.GetSuggestions(request, timeout=30).parameter_assignments)

            with ThreadPoolExecutor(8) as pool:
                assert sum(pool.map(ask, range(40))) == 80
            bad = api_pb2.GetSuggestionsRequest(
                experiment=experiment("no-such-algorithm"), current_request_number=1
            )
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetSuggestions(bad, timeout=30)
        after = scrape(url)
    finally:
        http.shutdown()
        server.stop(None)
    labels = {"grpc_type": "unary", "grpc_service": SUGGESTION, "grpc_method": "GetSuggestions"}
    assert sample(before, "grpc_server_handled_total", **labels, grpc_code="OK") == 0
    assert sample(after, "grpc_server_started_total", **labels) == 41
    assert sample(after, "grpc_server_handled_total", **labels, grpc_code="OK") == 40
    code = refused.value.code().name
    assert (
        code != "OK" and sample(after, "grpc_server_handled_total", **labels, grpc_code=code) == 1
    )
    assert sample(after, "grpc_server_handling_seconds_count", **labels) == 41
    total = sample(after, "grpc_server_handling_seconds_sum", **labels)
    assert total > 0
    # the buckets are cumulative and end with every call
    assert sample(after, "grpc_server_handling_seconds_bucket", **labels, le="+Inf") == 41


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("service", ["suggestion", "earlystop", "dbmanager"])
def test_each_service_serves_metrics_on_its_metrics_port(service: str, tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "tunery.cli", "serve", service, "--port", str(port)]
    argv += ["--metrics-port", "0"]
    if service != "suggestion":
        argv += ["--db", f"sqlite:///{tmp_path}/t.db"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TUNERY_METRICS_PORT", None)
    process = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                break
            if match := re.search(r"metrics on (http://\S+)", line):
                url = match.group(1)
        assert url, f"{service}: no metrics address announced"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            health = health_pb2_grpc.HealthStub(channel)
            labels = {
                "grpc_type": "unary",
                "grpc_service": "grpc.health.v1.Health",
                "grpc_method": "Check",
                "grpc_code": "OK",
            }
            counts = []
            for _ in range(3):
                health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
                counts.append(sample(scrape(url), "grpc_server_handled_total", **labels))
        assert counts == [counts[0], counts[0] + 1, counts[0] + 2] and counts[0] >= 1
    finally:
        process.terminate()
        process.wait(timeout=15)
