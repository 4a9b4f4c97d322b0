"""Every shipped example runs end to end through the ``tunery`` CLI on this machine.

One experiment per algorithm, the early-stopping, custom-regex and JSON-file collector
examples, the quickstart, and the custom algorithm server over gRPC. Trials are real local
processes; the store is a fresh SQLite file per test.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunery.cli import main
from tunery.store import open_store
from tunery.trials import TrialCondition

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALGORITHM_EXAMPLES = sorted((EXAMPLES / "algorithms").glob("*.yaml"))


def run_cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        [*args, "--db", f"sqlite:///{tmp_path}/t.db", "--logs-dir", str(tmp_path / "logs")],
        catch_exceptions=False,
    )
    return result.exit_code, result.output


def summary(output: str) -> dict:
    return json.loads(output[output.index("{") :])


@pytest.mark.parametrize("path", ALGORITHM_EXAMPLES, ids=[p.stem for p in ALGORITHM_EXAMPLES])
def test_algorithm_examples(tmp_path: Path, path: Path) -> None:
    code, output = run_cli(tmp_path, "run", str(path), "--max-trials", "6", "-o", "json")
    assert code == 0, output
    result = summary(output)
    assert (result["condition"], result["reason"]) == ("Succeeded", "ExperimentMaxTrialsReached")
    assert result["trials"] == result["succeeded"] == 6
    assert result["best"]["bestTrialName"]
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    trials = store.list_trials(result["name"])
    assert len({tuple(sorted(t.assignment.items())) for t in trials}) == 6  # all distinct


@pytest.mark.parametrize(
    ("relative", "metric"),
    [
        ("quickstart/experiment.yaml", "loss"),
        ("metrics-collector/custom-regex.yaml", "loss"),
        ("metrics-collector/json-file.yaml", "accuracy"),
        ("search-spaces/experiment.yaml", "memory_over_gb"),
    ],
)
def test_collector_examples(tmp_path: Path, relative: str, metric: str) -> None:
    code, output = run_cli(tmp_path, "run", str(EXAMPLES / relative), "-o", "json")
    assert code == 0, output
    result = summary(output)
    assert result["condition"] == "Succeeded" and result["succeeded"] == result["trials"]
    metrics = {m["name"] for m in result["best"]["observation"]["metrics"]}
    assert metric in metrics


def test_median_stop_example_stops_bad_trials(tmp_path: Path) -> None:
    code, output = run_cli(
        tmp_path,
        "run",
        str(EXAMPLES / "early-stopping/median-stop.yaml"),
        "--max-trials",
        "10",
        "-o",
        "json",
    )
    assert code == 0, output
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    trials = store.list_trials("median-stop")
    stopped = [t for t in trials if t.condition is TrialCondition.EARLY_STOPPED]
    assert stopped, [(t.name, t.condition, t.observation) for t in trials]
    for trial in stopped:
        assert trial.reason == "TrialEarlyStopped" and "median" in trial.message
    # the process was really stopped (one that finished during the decision keeps its 10)
    assert min(len(store.get_observations(t.name, "accuracy")) for t in stopped) < 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_custom_algorithm_server_over_grpc(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "custom-algorithm/server.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "hill-climb Suggestion server on ..."
        started = time.monotonic()
        code, output = run_cli(
            tmp_path,
            "run",
            str(EXAMPLES / "custom-algorithm/experiment.yaml"),
            "--suggestion-endpoint",
            f"hill-climb=127.0.0.1:{port}",
            "-o",
            "json",
        )
        assert code == 0, output
        assert summary(output)["succeeded"] == 8
        assert time.monotonic() - started < 60
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_unknown_algorithm_without_endpoint_is_invalid(tmp_path: Path) -> None:
    code, output = run_cli(tmp_path, "run", str(EXAMPLES / "custom-algorithm/experiment.yaml"))
    assert code == 2
    assert 'spec.algorithm.algorithmName: "hill-climb" is not a known algorithm' in output


def test_pytorch_digits_runs_on_the_cpu_without_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("torch", reason="the pytorch-digits example needs torch (tunery[torch])")
    monkeypatch.setenv("TUNERY_GPUS", "0")  # a machine without GPUs
    path = EXAMPLES / "pytorch-digits" / "experiment.yaml"
    code, output = run_cli(tmp_path, "run", str(path), "--max-trials", "3", "-o", "json")
    assert code == 0, output
    result = summary(output)
    assert (result["condition"], result["succeeded"]) == ("Succeeded", 3)
    assert any("run on the CPU" in r.getMessage() for r in caplog.records)
    logs = sorted((tmp_path / "logs" / "pytorch-digits").glob("*.log"))
    assert len(logs) == 3
    for log in logs:
        assert "device=cpu" in log.read_text() and "CUDA_VISIBLE_DEVICES=''" in log.read_text()
