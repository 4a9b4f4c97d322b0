"""Outages are waited out: a database stopped mid-run, a Suggestion server that is down.

Runs the real ``tunery`` command in subprocesses. The database tests use a private PostgreSQL
(``private_postgres`` in conftest.py) stopped and started by the test, never the shared one.
Trials print a start marker and one metric line per epoch, so the checks can tell a trial that
ran twice or an observation lost or doubled.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from suggestion.service import SuggestionServicer
from tunery.api import api_pb2_grpc
from tunery.store import open_store
from tunery.trials import TrialCondition

pytestmark = pytest.mark.slow

EPOCHS = 4
MAX_TRIALS = 9

TRIAL_SCRIPT = textwrap.dedent(
    f"""
    import os, sys, time
    x = float(sys.argv[1])
    print("start", os.environ["TUNERY_TRIAL_NAME"], flush=True)
    for epoch in range({EPOCHS}):
        time.sleep(0.3)
        print(f"epoch={{epoch}} loss={{(x - 0.3) ** 2 + 1 / (epoch + 1):.6f}}", flush=True)
    """
)


def experiment(name: str, algorithm: str = "random") -> str:
    return f"""
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: {name}
spec:
  objective: {{type: minimize, objectiveMetricName: loss}}
  algorithm: {{algorithmName: {algorithm}}}
  parallelTrialCount: 3
  maxTrialCount: {MAX_TRIALS}
  parameters:
    - {{name: x, parameterType: double, feasibleSpace: {{min: "0", max: "1"}}}}
  trialTemplate:
    primaryContainerName: main
    trialParameters: [{{name: x, reference: x}}]
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                command: [{sys.executable!r}, trial.py, "${{trialParameters.x}}"]
"""


def tunery(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tunery.cli", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_for_trial_output(cwd: Path, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = list((cwd / ".tunery" / "logs").rglob("*.log"))
        if sum("epoch=0" in p.read_text() for p in logs) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} trials reported a metric within {timeout} s")


def assert_complete_once(db_url: str, name: str) -> None:
    """Every trial Succeeded, started once, with each epoch's observation exactly once."""
    store = open_store(db_url)
    try:
        trials = store.list_trials(name)
        assert len(trials) == MAX_TRIALS
        assert len({t.name for t in trials}) == MAX_TRIALS
        for trial in trials:
            assert trial.condition is TrialCondition.SUCCEEDED, (trial.name, trial.message)
            log = Path(trial.runner_handle["log"]).read_text()
            assert log.count("start ") == 1, f"{trial.name} ran more than once:\n{log}"
            steps = [o.step for o in store.get_observations(trial.name, "loss")]
            assert steps == list(range(EPOCHS)), (trial.name, steps)
        status = store.get_experiment(name).status
        assert status["trialsSucceeded"] == MAX_TRIALS
        assert any(c["reason"] == "ExperimentMaxTrialsReached" for c in status["conditions"])
    finally:
        store.close()


def test_database_stopped_8s_mid_run_is_waited_out(private_postgres, tmp_path: Path) -> None:
    (tmp_path / "trial.py").write_text(TRIAL_SCRIPT)
    (tmp_path / "exp.yaml").write_text(experiment("outage"))
    db = private_postgres.url.replace("postgres@", "postgres:s3cret@")  # trust ignores it
    proc = tunery(tmp_path, "-v", "run", "exp.yaml", "--db", db, "-o", "json")
    wait_for_trial_output(tmp_path, 2)
    private_postgres.stop()
    time.sleep(8)
    assert proc.poll() is None, f"tunery gave up during the outage:\n{proc.communicate()[0]}"
    private_postgres.start()
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "retrying in" in output and "giving up at" in output, output
    assert "127.0.0.1" in output and "s3cret" not in output, output
    assert_complete_once(private_postgres.url, "outage")


def test_database_down_past_the_limit_exits_3_then_resumes(
    private_postgres, tmp_path: Path
) -> None:
    (tmp_path / "trial.py").write_text(TRIAL_SCRIPT)
    (tmp_path / "exp.yaml").write_text(experiment("limited"))
    db = private_postgres.url.replace("postgres@", "postgres:s3cret@")
    proc = tunery(tmp_path, "run", "exp.yaml", "--db", db, "--outage-limit", "3", "-o", "json")
    wait_for_trial_output(tmp_path, 1)
    private_postgres.stop()
    stopped = time.monotonic()
    output, _ = proc.communicate(timeout=30)
    took = time.monotonic() - stopped
    assert proc.returncode == 3, output
    assert 2.5 <= took <= 10, took
    assert "unavailable" in output and "outage limit of 3 s" in output, output
    assert f"127.0.0.1:{private_postgres.port}" in output and "s3cret" not in output, output
    assert "tunery resume limited" in output and "Traceback" not in output, output
    # the trials it left running finish on their own; resume collects them, nothing twice
    private_postgres.start()
    resumed = tunery(tmp_path, "resume", "limited", "--db", db, "-o", "json")
    output, _ = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, output
    assert_complete_once(private_postgres.url, "limited")


def test_unreachable_suggestion_endpoint_exits_3_naming_it(tmp_path: Path) -> None:
    """Nothing listens on the endpoint: exit 3 within 30 s with the default limit."""
    (tmp_path / "trial.py").write_text(TRIAL_SCRIPT)
    (tmp_path / "exp.yaml").write_text(experiment("nowhere", "my-algo"))
    with socket_port() as port:  # reserved, never listening
        started = time.monotonic()
        proc = tunery(
            tmp_path,
            "run",
            "exp.yaml",
            "--db",
            f"sqlite:///{tmp_path}/t.db",
            "--suggestion-endpoint",
            f"my-algo=127.0.0.1:{port}",
        )
        output, _ = proc.communicate(timeout=60)
        took = time.monotonic() - started
    assert proc.returncode == 3, output
    assert took < 30, took
    assert f"my-algo at 127.0.0.1:{port}" in output and "did not answer" in output, output
    assert "Traceback" not in output, output


def test_suggestion_server_away_for_seconds_mid_run(tmp_path: Path) -> None:
    """The custom algorithm server stops after the first trials and comes back 4 s later on
    the same port: the run completes."""
    (tmp_path / "trial.py").write_text(TRIAL_SCRIPT)
    (tmp_path / "exp.yaml").write_text(experiment("flaky", "my-algo"))
    server, port = serve_random_as("my-algo", 0)
    db = f"sqlite:///{tmp_path}/t.db"
    proc = tunery(
        tmp_path, "-v", "run", "exp.yaml", "--db", db, "--suggestion-endpoint",
        f"my-algo=127.0.0.1:{port}", "-o", "json",
    )  # fmt: skip
    try:
        wait_for_trial_output(tmp_path, 3)
        server.stop(grace=None).wait()
        time.sleep(4)
        assert proc.poll() is None, proc.communicate()[0]
        server, _ = serve_random_as("my-algo", port)
        output, _ = proc.communicate(timeout=60)
    finally:
        server.stop(grace=None)
    assert proc.returncode == 0, output
    assert "Suggestion service my-algo at" in output and "retrying in" in output, output
    assert_complete_once(db, "flaky")


class socket_port:
    """A port bound but not listening while the block runs: connecting to it is refused."""

    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        return int(self._socket.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._socket.close()


class _RenamedRandom(SuggestionServicer):
    """The built-in servicer answering for a custom algorithm name, as random search."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def GetSuggestions(self, request, context):
        request.experiment.spec.algorithm.algorithm_name = "random"
        return super().GetSuggestions(request, context)

    def ValidateAlgorithmSettings(self, request, context):
        request.experiment.spec.algorithm.algorithm_name = "random"
        return super().ValidateAlgorithmSettings(request, context)


def serve_random_as(name: str, port: int) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(4))
    api_pb2_grpc.add_SuggestionServicer_to_server(_RenamedRandom(name), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound
