"""The sidecar with ``--kind TensorFlowEvent`` and ``--kind PrometheusMetric``.

A real trial process writes event files with ``torch.utils.tensorboard`` (or serves
``prometheus_client``'s HTTP endpoint) while a real sidecar process collects them into a real
DBManager (gRPC) over a SQLite store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from metrics_collector.dbmanager import create_dbmanager_server
from metrics_collector.sidecar import parse_args

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

TORCH_TRAINER = textwrap.dedent(
    """
    import sys, time
    from torch.utils.tensorboard import SummaryWriter

    logs = sys.argv[1]
    train, test = SummaryWriter(logs + "/train"), SummaryWriter(logs + "/test")
    for epoch in range(4):
        train.add_scalar("accuracy", 0.9, epoch)
        train.add_scalar("loss", 1.0 / (epoch + 1), epoch)
        test.add_scalar("accuracy", epoch / 10, epoch, new_style=True)
        train.flush(); test.flush()
        time.sleep(0.3)
    train.close(); test.close()
    """
)

SERVER = textwrap.dedent(
    """
    import sys, time
    from prometheus_client import Gauge, start_http_server

    accuracy = Gauge("accuracy", "accuracy")
    start_http_server(int(sys.argv[1]), addr="127.0.0.1")
    for epoch in range(3):
        accuracy.set(epoch / 10)
        time.sleep(1.5)
    """
)


@pytest.fixture
def dbmanager(sqlite_store) -> Iterator[str]:
    server, port = create_dbmanager_server("127.0.0.1:0", sqlite_store, max_workers=4)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None).wait()


def _sidecar(tmp_path: Path, address: str, pid: int, *args: str) -> subprocess.Popen[str]:
    argv = [
        sys.executable, "-m", "metrics_collector", "-t", "trial-1", "-s-db", address,
        "--pid", str(pid), "--marker-dir", str(tmp_path / "marks"), *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def test_tfevent_sidecar_reads_katib_names_from_growing_event_files(
    tmp_path: Path, dbmanager: str, sqlite_store
) -> None:
    pytest.importorskip("torch.utils.tensorboard")
    script = tmp_path / "train.py"
    script.write_text(TORCH_TRAINER)
    logs = tmp_path / "logs"
    trial = subprocess.Popen([sys.executable, str(script), str(logs)])
    sidecar = _sidecar(
        tmp_path, dbmanager, trial.pid,
        "--kind", "TensorFlowEvent", "-path", str(logs), "-m", "test/accuracy;train/loss",
    )  # fmt: skip
    assert trial.wait(60) == 0
    _, err = sidecar.communicate(timeout=60)
    assert sidecar.returncode == 0, err
    accuracy = sqlite_store.get_observations("trial-1", "test/accuracy")
    # test/ only (train/ has accuracy 0.9), with the event's step
    assert [(o.step, o.numeric) for o in accuracy] == [
        (e, pytest.approx(e / 10)) for e in range(4)
    ]
    loss = sqlite_store.get_observations("trial-1", "train/loss")
    assert [(o.step, o.numeric) for o in loss] == [
        (e, pytest.approx(1.0 / (e + 1))) for e in range(4)
    ]
    # a restarted sidecar adds nothing twice
    again = _sidecar(
        tmp_path, dbmanager, trial.pid,
        "--kind", "TensorFlowEvent", "-path", str(logs), "-m", "test/accuracy;train/loss",
    )  # fmt: skip
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert len(sqlite_store.get_observations("trial-1", "test/accuracy")) == 4


def test_prometheus_sidecar_scrapes_the_trial_until_it_exits(
    tmp_path: Path, dbmanager: str, sqlite_store
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "serve.py"
    script.write_text(SERVER)
    trial = subprocess.Popen([sys.executable, str(script), str(port)])
    sidecar = _sidecar(
        tmp_path, dbmanager, trial.pid,
        "--kind", "PrometheusMetric", "-path", f"http://127.0.0.1:{port}/metrics",
        "-m", "accuracy;loss",
    )  # fmt: skip
    assert trial.wait(60) == 0
    _, err = sidecar.communicate(timeout=60)
    assert sidecar.returncode == 0, err
    rows = sqlite_store.get_observations("trial-1", "accuracy")
    assert [(o.step, o.numeric) for o in rows] == [(0, 0.0), (1, 0.1), (2, 0.2)]
    assert sqlite_store.get_observations("trial-1", "loss") == []


def test_an_endpoint_that_never_answers_reports_unavailable(
    tmp_path: Path, dbmanager: str, sqlite_store
) -> None:
    trial = subprocess.Popen(["sleep", "1.5"])
    sidecar = _sidecar(
        tmp_path, dbmanager, trial.pid,
        "--kind", "PrometheusMetric", "-path", "http://127.0.0.1:9/metrics", "-m", "accuracy",
    )  # fmt: skip
    _, err = sidecar.communicate(timeout=60)
    assert sidecar.returncode == 0, err
    assert [o.value for o in sqlite_store.get_observations("trial-1", "accuracy")] == [
        "unavailable"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "PrometheusMetric", "-path", "/metrics"], "must be an http:// URL"),
        (["--kind", "PrometheusMetric", "-path", "http://h:1/m", "-m", "a{b}"], "labels"),
    ],
)
def test_bad_polled_flags_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["-t", "t", "--marker-dir", "/tmp/m"]
    if "-m" not in args:
        base += ["-m", "accuracy"]
    with pytest.raises(SystemExit) as info:
        parse_args([*base, *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_polled_kinds_need_a_marker_dir(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["-t", "t", "-m", "a", "--kind", "TensorFlowEvent", "-path", "/logs"])
    assert "needs --marker-dir" in capsys.readouterr().err
    config, _ = parse_args(
        ["-t", "t", "-m", "a", "--kind", "PrometheusMetric", "--marker-dir", "/m",
         "-path", "http://127.0.0.1:8080/metrics"]
    )  # fmt: skip
    assert config.url == "http://127.0.0.1:8080/metrics" and config.marks == Path("/m")
