"""The Kubernetes sidecar: Katib flags, push to a DBManager, early stop of the main process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from metrics_collector.dbmanager import create_dbmanager_server
from metrics_collector.parsers import MetricsFormat
from metrics_collector.sidecar import MainProcess, children_of, parse_args, process_alive
from metrics_collector.stoprules import Comparison, StopRule
from tunery.api import api_pb2, api_pb2_grpc
from tunery.serving import create_server, service_name
from tunery.trials import ObjectiveType

ROOT = Path(__file__).resolve().parents[2]
KATIB_FILE_FILTER = r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}"


def test_katib_flags() -> None:
    config, verbose = parse_args(
        [
            "-t", "mnist-abc", "-m", "loss;accuracy", "-o-type", "minimize",
            "-s-db", "katib-db-manager.kubeflow:6789", "-path", "/var/log/katib/metrics.log",
            "-f", KATIB_FILE_FILTER, "-format", "TEXT", "-w", "true",
            "-stop-rule", "loss;0.5;GREATER;2", "-stop-rule", "accuracy;0.1;LESS;0",
            "-s-earlystop", "exp-medianstop.kubeflow:6788",
        ]
    )  # fmt: skip
    assert config.trial_name == "mnist-abc"
    assert config.metric_names == ("loss", "accuracy")
    assert config.objective_type is ObjectiveType.MINIMIZE
    assert config.dbmanager_address == "katib-db-manager.kubeflow:6789"
    assert config.path == Path("/var/log/katib/metrics.log")
    assert config.marks == Path("/var/log/katib")
    assert config.format is MetricsFormat.TEXT
    assert config.filters == (KATIB_FILE_FILTER,)
    assert config.stop_rules == (
        StopRule("loss", 0.5, Comparison.GREATER, 2),
        StopRule("accuracy", 0.1, Comparison.LESS, 0),
    )
    assert config.earlystop_address == "exp-medianstop.kubeflow:6788"
    assert not verbose
    long, _ = parse_args(
        ["--trial-name", "t", "--metric-names", "acc", "--path", "x.jsonl", "--format", "json",
         "--pid", "12"]
    )  # fmt: skip
    assert long.format is MetricsFormat.JSON and long.pid == 12
    text, _ = parse_args(["-t", "t", "-m", "acc", "-path", "x", "--filter", "a;(b)(c)"])
    assert text.filters == ("a;(b)(c)",)  # not split on ";"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-stop-rule", "loss;0.5"], "must be name;value;comparison;startStep"),
        (["-f", "(oops"], "not a valid regex"),
        (["-format", "XML"], "-format must be TEXT or JSON"),
    ],
)
def test_bad_flags_exit_2(extra: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["-t", "t", "-m", "loss", "-path", "x", *extra])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


class EarlyStopping(api_pb2_grpc.EarlyStoppingServicer):
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.called = threading.Event()

    def SetTrialStatus(self, request, context):
        self.calls.append(request.trial_name)
        self.called.set()
        return api_pb2.SetTrialStatusReply()


class Services:
    def __init__(self, store) -> None:
        self.store = store
        self.db, db_port = create_dbmanager_server("127.0.0.1:0", store, max_workers=4)
        self.early = EarlyStopping()

        def register(server: grpc.Server) -> str:
            api_pb2_grpc.add_EarlyStoppingServicer_to_server(self.early, server)
            return service_name("EarlyStopping")

        self.es, es_port = create_server([register], "127.0.0.1:0", max_workers=2)
        self.db.start()
        self.es.start()
        self.db_address = f"127.0.0.1:{db_port}"
        self.es_address = f"127.0.0.1:{es_port}"

    def close(self) -> None:
        self.db.stop(None).wait()
        self.es.stop(None).wait()


@pytest.fixture
def services(sqlite_store) -> Iterator[Services]:
    s = Services(sqlite_store)
    yield s
    s.close()


TRAINER = """
import sys, time
for epoch in range({epochs}):
    print(f"epoch={{epoch}} loss={{{loss}}} accuracy=0.5", flush=True)
    time.sleep({sleep})
"""

# Katib's wrapper: the training command, "early-stopped" mark check, "completed" mark.
WRAPPER = (
    "{cmd} > {log} 2>&1 || if test -f {marks}/$$.pid && "
    '[ "$(head -n 1 {marks}/$$.pid)" = early-stopped ]; then '
    "echo Training Container was Early Stopped; else echo Training Container was Failed; exit 1; "
    "fi && echo completed > {marks}/$$.pid"
)


def start_trial(tmp_path: Path, epochs: int, loss: str, sleep: float) -> subprocess.Popen:
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    script = tmp_path / "train.py"
    script.write_text(TRAINER.format(epochs=epochs, loss=loss, sleep=sleep))
    command = WRAPPER.format(
        cmd=f"{sys.executable} -u {script}", log=tmp_path / "metrics.log", marks=marks
    )
    return subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, text=True)


def run_sidecar(tmp_path: Path, services: Services, pid: int, *extra: str) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "metrics_collector", "-t", "trial-1", "-m", "loss;accuracy",
        "-o-type", "minimize", "-s-db", services.db_address,
        "-path", str(tmp_path / "metrics.log"),
        "--marker-dir", str(tmp_path / "marks"), "--pid", str(pid), "--poll-interval", "0.02",
        "--kill-grace", "2", *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def test_sidecar_pushes_everything_and_exits_with_the_main_process(
    tmp_path: Path, services: Services
) -> None:
    trial = start_trial(tmp_path, epochs=20, loss="1.0 / (epoch + 1)", sleep=0.01)
    sidecar = run_sidecar(tmp_path, services, trial.pid)
    assert trial.wait(30) == 0
    _, err = sidecar.communicate(timeout=30)
    assert sidecar.returncode == 0, err
    rows = services.store.get_observations("trial-1", "loss")
    assert [o.step for o in rows] == list(range(20))
    assert rows[-1].value == str(1.0 / 20)
    assert (tmp_path / "marks" / f"{trial.pid}.pid").read_text().strip() == "completed"
    # A restarted sidecar (same file, same trial) pushes nothing twice.
    again = run_sidecar(tmp_path, services, trial.pid)
    _, err = again.communicate(timeout=30)
    assert again.returncode == 0, err
    assert len(services.store.get_observations("trial-1", "loss")) == 20


def test_sidecar_stops_the_trial_early(tmp_path: Path, services: Services) -> None:
    trial = start_trial(tmp_path, epochs=500, loss="2.0", sleep=0.02)
    sidecar = run_sidecar(
        tmp_path, services, trial.pid, "-stop-rule", "loss;1.0;GREATER;3",
        "-s-earlystop", services.es_address,
    )  # fmt: skip
    out, _ = trial.communicate(timeout=60)
    assert trial.returncode == 0
    assert "Training Container was Early Stopped" in out
    _, err = sidecar.communicate(timeout=60)
    assert sidecar.returncode == 0, err
    assert services.early.calls == ["trial-1"]
    rows = services.store.get_observations("trial-1", "loss")
    assert 3 <= len(rows) < 500
    assert "early stopping trial trial-1" in err


def test_missing_objective_reports_unavailable(tmp_path: Path, services: Services) -> None:
    trial = start_trial(tmp_path, epochs=3, loss="'nan-ish'", sleep=0.0)
    assert trial.wait(30) == 0
    sidecar = run_sidecar(tmp_path, services, trial.pid)
    _, err = sidecar.communicate(timeout=30)
    assert sidecar.returncode == 0, err
    rows = services.store.get_observations("trial-1", "loss")
    assert [(o.value, o.numeric) for o in rows] == [("unavailable", None)]
    assert len(services.store.get_observations("trial-1", "accuracy")) == 3


def test_main_process_from_a_pid_file_and_markers(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        main = MainProcess(None, tmp_path / "main.pid", tmp_path)
        assert main.known and main.pid() is None and not main.is_done()
        (tmp_path / "main.pid").write_text(f"{proc.pid}\n")  # the wrapper starts: echo $$
        assert main.pid() == proc.pid and not main.is_done()
        (tmp_path / f"{proc.pid}.pid").write_text("completed\n")
        assert main.is_done()
        (tmp_path / f"{proc.pid}.pid").unlink()
        assert not main.is_done()
    finally:
        proc.kill()
        proc.wait()
    assert main.is_done()  # gone
    zombie = subprocess.Popen(["true"])
    until_exited = time.monotonic() + 5
    while Path(f"/proc/{zombie.pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < until_exited
        time.sleep(0.01)
    assert not process_alive(zombie.pid)  # exited, not yet reaped
    zombie.wait()


def test_main_process_stop_terminates_the_training_program(tmp_path: Path) -> None:
    wrapper = subprocess.Popen(
        ["sh", "-c", "sleep 30; echo wrapper still ran"], stdout=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 5
        while not children_of(wrapper.pid):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (child,) = children_of(wrapper.pid)
        MainProcess(wrapper.pid, None, tmp_path).stop(grace=2)
        assert (tmp_path / f"{wrapper.pid}.pid").read_text() == "early-stopped\n"
        out, _ = wrapper.communicate(timeout=5)
        assert out == b"wrapper still ran\n"  # the child died, the wrapper saw the mark
        assert not process_alive(child)
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()


def test_sigterm_drains_pushes_and_exits(tmp_path: Path, services: Services) -> None:
    """A native sidecar (no main process known) runs until SIGTERM, then flushes."""
    log = tmp_path / "metrics.log"
    log.write_bytes(b"".join(b"loss=%d\n" % i for i in range(10)))
    (tmp_path / "marks").mkdir()
    args = [
        sys.executable, "-m", "metrics_collector", "-t", "trial-1", "-m", "loss",
        "-s-db", services.db_address, "-path", str(log), "--poll-interval", "0.02",
    ]  # fmt: skip
    sidecar = subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while len(services.store.get_observations("trial-1")) < 10:
        assert time.monotonic() < deadline and sidecar.poll() is None
        time.sleep(0.02)
    with log.open("ab") as f:
        f.write(b"loss=10")  # no newline: parsed at the end
    sidecar.send_signal(signal.SIGTERM)
    _, err = sidecar.communicate(timeout=30)
    assert sidecar.returncode == 0, err
    assert [o.value for o in services.store.get_observations("trial-1")] == [
        str(i) for i in range(11)
    ]
