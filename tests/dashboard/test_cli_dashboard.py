"""``tunery dashboard``: refuses unsafe bindings, serves a store, maps errors to exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.dashboard.conftest import NAME, Run, tunery_env
from tunery.store import open_store


def tunery(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunery.cli", *args],
        capture_output=True,
        text=True,
        env=env or tunery_env(),
        timeout=60,
    )


def test_another_host_without_a_token_exits_2(finished_run: Run) -> None:
    done = tunery("dashboard", "--db", finished_run.db_url, "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "TUNERY_DASHBOARD_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_a_missing_store_is_named(tmp_path: object) -> None:
    done = tunery("dashboard", "--db", f"sqlite:///{tmp_path}/none.db")
    assert done.returncode == 1 and "no tunery store at" in done.stderr


def test_a_bad_port_is_invalid_input() -> None:
    assert tunery("dashboard", "--port", "99999").returncode == 2


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT
    stderr: str = ""  # the server's, once it has ended


@contextmanager
def serving(*args: str) -> Iterator[Served]:
    """``tunery dashboard ARGS`` on a free port, in its own process group (as in a terminal),
    yielded once its API answers; ended with Ctrl-C to the whole group."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunery.cli", "dashboard", *args, "--port", str(port)],
        env=tunery_env(),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    served = Served(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{served.url}/api/experiments", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        yield served
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        _, served.stderr = proc.communicate(timeout=20)


@pytest.mark.slow
def test_serves_the_store_until_interrupted(finished_run: Run) -> None:
    with serving("--db", finished_run.db_url) as served:
        response = httpx.get(f"{served.url}/api/experiments", timeout=10)
        assert [e["name"] for e in response.json()] == [NAME]
        importance = httpx.get(  # fitted by the server's worker process
            f"{served.url}/api/experiments/{NAME}/plots/importance", timeout=60
        )
        assert importance.json()["data"][0]["type"] == "bar"
    err = served.stderr
    assert "tunery dashboard on http://127.0.0.1:" in err and "read-only" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_serves_the_namespace_it_is_given(tmp_path: Path) -> None:
    """A store shared with the operator: ``--namespace`` picks whose experiments are served."""
    url = f"sqlite:///{tmp_path}/shared.db"
    store = open_store(url)
    document = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "only-a"},
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": "acc"},
            "algorithm": {"algorithmName": "random"},
            "parameters": [
                {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
            ],
        },
    }
    store.in_namespace("team-a").create_experiment("only-a", document)
    store.close()
    with serving("--db", url, "--namespace", "team-a") as served:
        listed = httpx.get(f"{served.url}/api/experiments", timeout=10)
        assert [e["name"] for e in listed.json()] == ["only-a"]
        one = httpx.get(f"{served.url}/api/experiments/only-a", timeout=10)
        assert one.status_code == 200, one.text
    err = served.stderr
    assert f"store {url}, namespace team-a)" in err and "Traceback" not in err, err
    default = tunery("list", "--db", url)  # the same store, the default namespace: empty
    assert "no experiments in" in default.stdout and "team-a" in default.stdout
