"""The pod's two halves together: the trial wrapper (controller.sidecar.WRAPPER) and the
collector sidecar (``python -m metrics_collector``), run as local processes the way a pod with
``shareProcessNamespace`` runs them, pushing to a real DBManager server over gRPC.

Checks the marker contract both sides implement: the wrapper records its pid, the sidecar
finds it, stops the trial on a stop rule, and the wrapper then exits 0; without a stop, the
wrapper marks ``completed`` and the sidecar exits by itself with every metric stored. Where the
tests run as root, the halves also run without capabilities as the users a restricted pod gives
them, to show why the collector takes the trial's user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from controller.sidecar import WRAPPER
from metrics_collector.dbmanager import create_dbmanager_server
from tunery.store.base import Store

pytestmark = pytest.mark.slow

TRAIN = textwrap.dedent(
    """
    import sys, time
    for epoch in range(1, 40):
        print(f"epoch={epoch} accuracy={0.1 * min(epoch, 3):.2f}", flush=True)
        time.sleep(0.05)
    """
)


def start_pod(tmp_path: Path, port: int, *extra: str) -> tuple[subprocess.Popen, subprocess.Popen]:
    metrics_dir = tmp_path / "katib"
    env = dict(
        os.environ,
        TUNERY_METRICS_DIR=str(metrics_dir),
        TUNERY_METRICS_FILE=str(metrics_dir / "metrics.log"),
        TUNERY_TEE_OUTPUT="1",
    )
    (tmp_path / "train.py").write_text(TRAIN)
    trial = subprocess.Popen(
        ["sh", "-c", WRAPPER, "tunery-trial", sys.executable, str(tmp_path / "train.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "metrics_collector", "-t", "trial-1", "-m", "accuracy",
         "-o-type", "maximize", "-s-db", f"127.0.0.1:{port}",
         "-path", str(metrics_dir / "metrics.log"),
         "--pid-file", str(metrics_dir / "main.pid"), "--marker-dir", str(metrics_dir),
         "--poll-interval", "0.05", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return trial, sidecar


@pytest.fixture
def dbmanager(sqlite_store: Store):
    server, port = create_dbmanager_server("127.0.0.1:0", sqlite_store)
    server.start()
    yield port
    server.stop(0)


def test_trial_runs_to_completion_and_every_metric_is_stored(
    tmp_path: Path, sqlite_store: Store, dbmanager: int
) -> None:
    trial, sidecar = start_pod(tmp_path, dbmanager)
    out, _ = trial.communicate(timeout=60)
    assert trial.returncode == 0, out
    assert out.count("accuracy=") == 39  # teed: still in the container's log
    sidecar_out, _ = sidecar.communicate(timeout=60)
    assert sidecar.returncode == 0, sidecar_out
    rows = sqlite_store.get_observations("trial-1", "accuracy")
    assert [o.step for o in rows] == list(range(39))


def test_stop_rule_stops_the_trial_which_exits_zero(
    tmp_path: Path, sqlite_store: Store, dbmanager: int
) -> None:
    # accuracy plateaus at 0.3: the rule "accuracy < 0.5 at step 5" fires
    trial, sidecar = start_pod(tmp_path, dbmanager, "-stop-rule", "accuracy;0.5;LESS;5")
    out, _ = trial.communicate(timeout=60)
    sidecar_out, _ = sidecar.communicate(timeout=60)
    assert trial.returncode == 0, out
    assert "stopped early" in out
    assert out.count("accuracy=") < 39, out
    rows = sqlite_store.get_observations("trial-1", "accuracy")
    assert 5 <= len(rows) < 39, sidecar_out


SHELL_TRAIN = (
    'i=1; while [ "$i" -lt 40 ]; do echo "epoch=$i accuracy=0.30"; sleep 0.1; i=$((i+1)); done'
)
NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the pod's halves as other users without capabilities",
)
@pytest.mark.parametrize("trial_uid", [0, 1000], ids=["same-user", "other-user"])
def test_only_a_collector_of_the_trials_user_can_stop_it(
    trial_uid: int, sqlite_store: Store, dbmanager: int
) -> None:
    """Why the collector runs as the trial's user: without capabilities (``drop: [ALL]``) a
    process may signal only processes of its own user. Both halves run without capabilities,
    the collector as uid 0, the trial as uid 0 or 1000; the metrics folder is world-writable,
    as the kubelet makes an emptyDir."""
    metrics_dir = Path(tempfile.mkdtemp(prefix="tunery-emptydir-"))
    try:
        metrics_dir.chmod(0o777)
        env = dict(
            os.environ,
            TUNERY_METRICS_DIR=str(metrics_dir),
            TUNERY_METRICS_FILE=str(metrics_dir / "metrics.log"),
            TUNERY_TEE_OUTPUT="1",
        )
        as_trial = [*NO_CAPS, f"--reuid={trial_uid}", f"--regid={trial_uid}", "--clear-groups"]
        trial = subprocess.Popen(
            [*as_trial, "--", "sh", "-c", WRAPPER, "tunery-trial", "sh", "-c", SHELL_TRAIN],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        sidecar = subprocess.Popen(
            [*NO_CAPS, "--", sys.executable, "-m", "metrics_collector", "-t", "trial-1",
             "-m", "accuracy", "-o-type", "maximize", "-s-db", f"127.0.0.1:{dbmanager}",
             "-path", str(metrics_dir / "metrics.log"),
             "--pid-file", str(metrics_dir / "main.pid"), "--marker-dir", str(metrics_dir),
             "--poll-interval", "0.05", "--kill-grace", "2",
             "-stop-rule", "accuracy;0.5;LESS;5"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        out, _ = trial.communicate(timeout=60)
        sidecar_out, _ = sidecar.communicate(timeout=90)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    assert trial.returncode == 0, out
    assert "stopped early" in out  # the marker is written either way
    if trial_uid == 0:
        assert out.count("accuracy=") < 39, out
        assert "cannot signal" not in sidecar_out
    else:
        assert out.count("accuracy=") == 39  # it ran to its end
        assert "cannot signal process" in sidecar_out, sidecar_out
