"""The importance plot's forest fitted in a worker process: the in-process result, and a
worker that does not outlive its server."""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.dashboard.conftest import NAME, Run, tunery_env
from tunery.dashboard import api
from tunery.dashboard.worker import ForestWorker
from tunery.store import Store
from tunery.visualization import data

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork: fitted in-process"
)


def test_the_worker_fits_the_same_forest_and_falls_back_in_process() -> None:
    rng = np.random.default_rng(1)
    features = rng.uniform(size=(300, 3))
    target = features[:, 0] * 3 + features[:, 1] + rng.normal(0, 0.05, 300)
    expected = data.forest_importances(features, target)
    worker = ForestWorker()
    try:
        fitted = worker.fit(features, target)
        assert np.array_equal(fitted, expected)
        assert int(np.argmax(fitted)) == 0  # the feature the target depends on most
    finally:
        worker.close()
    assert np.array_equal(worker.fit(features, target), expected)  # in-process now


def test_importance_through_the_worker_is_the_plots_importance(run_store: Store) -> None:
    snapshot = data.load_snapshot(run_store, NAME)
    in_process = data.load_snapshot(run_store, NAME)
    worker = ForestWorker()
    try:
        assert data.importance(snapshot, worker.fit) == data.importance(in_process)
    finally:
        worker.close()
    assert data.importance(snapshot)["importances"], "the example has parameter importances"


def test_the_first_screen_is_warmed_up_first() -> None:
    from tunery.dashboard.pages import PLOTS

    assert tuple(kind for kind, _ in PLOTS[:4]) == api.FIRST_SCREEN


def children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in found]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
def test_the_worker_ends_with_a_terminated_server(finished_run: Run) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "tunery.cli", "dashboard", "--db", finished_run.db_url]
    proc = subprocess.Popen(
        [*command, "--port", str(port)],
        env=tunery_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not children(proc.pid):
            assert time.monotonic() < deadline and proc.poll() is None, "no worker forked"
            time.sleep(0.1)
        (worker,) = children(proc.pid)
    finally:
        proc.kill()  # no chance to stop its pool
        proc.wait(10)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{worker}").exists() and "Z" not in status(worker):
        assert time.monotonic() < deadline, "the worker outlived its server"
        time.sleep(0.1)


def status(pid: int) -> str:
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    return "gone"
