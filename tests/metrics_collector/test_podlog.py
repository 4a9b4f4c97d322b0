"""The sidecar's pod-log source (``--follow-container``): a primary container without a command.

A small HTTP server plays the Kubernetes API for one pod: its log stream (timestamped lines,
ended early once to force a reconnection) and its status (the container terminates after the
second stream). The sidecar runs in-process over an in-memory store.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from metrics_collector.podlog import (
    PodApi,
    PodLogError,
    PodLogFollower,
    container_terminated,
    parse_timestamp,
)
from metrics_collector.sidecar import Sidecar, parse_args

LINES = [
    ("2026-01-02T03:04:05.100000000Z", "[LightGBM] [Info] Iteration:1, valid_1 auc : 0.71"),
    ("2026-01-02T03:04:05.2Z", "[LightGBM] [Info] Iteration:2, valid_1 auc : 0.82"),
    ("2026-01-02T03:04:06.000000001Z", "[LightGBM] [Info] Iteration:3, valid_1 auc : 0.93"),
]


class FakePodApi:
    """Serves ``/api/v1/namespaces/ns/pods/trial-pod`` (and ``/log``) from a script."""

    def __init__(self, *, status_code: int = 200) -> None:
        self.status_code = status_code
        self.requests: list[tuple[str, dict[str, list[str]], str]] = []
        self.streams = 0
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                with api.lock:
                    api.requests.append((url.path, query, self.headers.get("Authorization", "")))
                if api.status_code != 200:
                    self._send(api.status_code, {"kind": "Status", "message": "pods is forbidden"})
                elif url.path == "/api/v1/namespaces/ns/pods/trial-pod/log":
                    self._log(query)
                elif url.path == "/api/v1/namespaces/ns/pods/trial-pod":
                    state = (
                        {"terminated": {"exitCode": 0}} if api.streams >= 2 else {"running": {}}
                    )
                    status = {"phase": "Running", "containerStatuses": [
                        {"name": "xgboost", "state": state}]}  # fmt: skip
                    self._send(200, {"status": status})
                else:
                    self._send(404, {"message": "not found"})

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _log(self, query: dict[str, list[str]]) -> None:
                with api.lock:
                    api.streams += 1
                    first = api.streams == 1
                # the first stream ends after two lines; the second starts at the second's
                # second (sinceTime), so it repeats one line
                lines = LINES[:2] if first else LINES[1:]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                for ts, text in lines:
                    self.wfile.write(f"{ts} {text}\n".encode())
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakePodApi:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pod_api() -> Iterator[FakePodApi]:
    with FakePodApi() as fake:
        yield fake


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text("secret-token\n")
    return tmp_path


def test_timestamps_compare_whatever_their_fraction() -> None:
    assert parse_timestamp("2026-01-02T03:04:05.2Z") == parse_timestamp(
        "2026-01-02T03:04:05.200000000Z"
    )
    assert parse_timestamp("2026-01-02T03:04:05Z") < parse_timestamp(  # type: ignore[operator]
        "2026-01-02T03:04:05.000000001Z"
    )
    assert parse_timestamp("not a time") is None


def test_the_follower_reconnects_skips_what_it_fed_and_ends_with_the_container(
    pod_api: FakePodApi, token_dir: Path
) -> None:
    fed: list[bytes] = []
    api = PodApi(pod_api.url, "ns", "trial-pod", token_dir)
    follower = PodLogFollower(api, "xgboost", fed.append, retry_interval=0.05)
    runner = threading.Thread(target=follower.run)
    runner.start()
    runner.join(10)
    assert not runner.is_alive()
    assert fed == [f"{text}\n".encode() for _, text in LINES]  # each line once, no timestamp
    logs = [(q, auth) for path, q, auth in pod_api.requests if path.endswith("/log")]
    assert len(logs) == 2
    assert logs[0][0] == {"container": ["xgboost"], "follow": ["true"], "timestamps": ["true"]}
    assert logs[1][0]["sinceTime"] == ["2026-01-02T03:04:05Z"]  # the last line's second
    assert {auth for _, auth in logs} == {"Bearer secret-token"}


def test_the_sidecar_collects_a_trial_without_command_from_its_log(
    pod_api: FakePodApi, token_dir: Path, memory_store, monkeypatch
) -> None:
    monkeypatch.setenv("POD_NAME", "trial-pod")
    monkeypatch.setenv("POD_NAMESPACE", "ns")
    config, _ = parse_args([
        "-t", "trial-1", "-m", "valid_1 auc", "-o-type", "maximize", "-s-db", "unused:1",
        "-path", "/var/log/katib/metrics.log", "-f", r"(\w+\s\w+)\s:\s((-?\d+)(\.\d+)?)",
        "--follow-container", "xgboost", "--api-server", pod_api.url,
        "--token-dir", str(token_dir),
    ])  # fmt: skip
    assert Sidecar(config, client=memory_store).run() == 0  # type: ignore[arg-type]
    values = [o.value for o in memory_store.get_observations("trial-1", "valid_1 auc")]
    assert values == ["0.71", "0.82", "0.93"]


def test_a_refused_log_names_the_role_to_bind(token_dir: Path, caplog) -> None:
    with FakePodApi(status_code=403) as fake:
        api = PodApi(fake.url, "ns", "trial-pod", token_dir)
        follower = PodLogFollower(api, "xgboost", lambda _: None, retry_interval=0.05)
        runner = threading.Thread(target=follower.run)
        with caplog.at_level(logging.ERROR, logger="metrics_collector.podlog"):
            runner.start()
            threading.Event().wait(0.3)
            follower.stop(drain=False)
            runner.join(5)
    assert not runner.is_alive()
    message = caplog.text
    assert "pods is forbidden" in message and "tunery-trial-log-reader" in message
    assert "kubectl -n ns create rolebinding" in message


def test_settings_come_from_the_pod_and_missing_ones_are_named() -> None:
    env = {"POD_NAME": "p", "POD_NAMESPACE": "ns", "KUBERNETES_SERVICE_HOST": "10.0.0.1",
           "KUBERNETES_SERVICE_PORT": "443"}  # fmt: skip
    api = PodApi.from_env(env)
    assert (api.api_server, api.namespace, api.pod) == ("https://10.0.0.1:443", "ns", "p")
    with pytest.raises(PodLogError, match="POD_NAME, POD_NAMESPACE"):
        PodApi.from_env({"KUBERNETES_SERVICE_HOST": "h"})


def test_a_terminated_container_or_a_gone_pod_ends_the_follower() -> None:
    running = {"containerStatuses": [{"name": "c", "state": {"running": {}}}]}
    ended = {"containerStatuses": [{"name": "c", "state": {"terminated": {"exitCode": 1}}}]}
    assert not container_terminated(running, "c")
    assert container_terminated(ended, "c")
    assert container_terminated(None, "c")
    assert container_terminated({"phase": "Succeeded"}, "c")


def test_follow_refuses_stop_rules() -> None:
    with pytest.raises(SystemExit):
        parse_args(["-t", "t", "-m", "loss", "-path", "/x", "--follow-container", "c",
                    "-stop-rule", "loss;0.1;less;0"])  # fmt: skip
