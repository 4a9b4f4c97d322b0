"""report_metrics to each destination, its validation, and pushed metrics driving early stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from metrics_collector.collector import TrialCollector
from metrics_collector.dbmanager import create_dbmanager_server
from metrics_collector.errors import InvalidMetricError, PushError
from metrics_collector.parsers import JsonLinesParser
from metrics_collector.push import metric_text, report_metrics
from metrics_collector.sources import FileTailer
from tunery.trials import Objective, ObjectiveType, Observation, StopDecision

ROOT = Path(__file__).resolve().parents[2]
DESTINATION_ENV = (
    "TUNERY_METRICS_FILE",
    "TUNERY_DB_URL",
    "TUNERY_DBMANAGER_ADDRESS",
    "TUNERY_TRIAL_NAME",
    "KATIB_TRIAL_NAME",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in DESTINATION_ENV:
        monkeypatch.delenv(key, raising=False)


def test_local_mode_appends_json_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "trial.metrics.jsonl"
    monkeypatch.setenv("TUNERY_TRIAL_NAME", "t")
    monkeypatch.setenv("TUNERY_METRICS_FILE", str(path))
    report_metrics({"loss": 0.25, "accuracy": np.float32(0.5)}, step=3)
    report_metrics({"loss": np.int64(2)})
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    assert first["step"] == 3 and first["loss"] == "0.25" and first["accuracy"] == "0.5"
    assert isinstance(first["timestamp"], float)
    parsed = JsonLinesParser(["loss", "accuracy"]).parse(path.read_bytes())
    assert [(o.metric_name, o.value, o.step) for o in parsed] == [
        ("loss", "0.25", 3),
        ("accuracy", "0.5", 3),
        ("loss", "2", 1),
    ]
    with pytest.raises(InvalidMetricError, match="'step' is reserved"):
        report_metrics({"step": 1.0})


def test_a_database_url_is_never_a_destination(
    sqlite_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial pushes through the DBManager (or the local metrics file), never to a database
    URL it might have: TUNERY_DB_URL in its environment is ignored."""
    stray = tmp_path / "stray.sqlite"
    monkeypatch.setenv("TUNERY_DB_URL", f"sqlite:///{stray}")
    server, port = create_dbmanager_server("127.0.0.1:0", sqlite_store, max_workers=2)
    server.start()
    try:
        monkeypatch.setenv("TUNERY_TRIAL_NAME", "t")
        monkeypatch.setenv("TUNERY_DBMANAGER_ADDRESS", f"127.0.0.1:{port}")
        report_metrics({"loss": 0.5})
    finally:
        server.stop(None).wait()
    assert [(o.metric_name, o.value) for o in sqlite_store.get_observations("t")] == [
        ("loss", "0.5")
    ]
    assert not stray.exists()


def test_metrics_file_is_created_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "push.jsonl"
    monkeypatch.setenv("TUNERY_TRIAL_NAME", "t")
    monkeypatch.setenv("TUNERY_METRICS_FILE", str(path))
    old = os.umask(0)
    try:
        report_metrics({"loss": 0.5})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600


def test_dbmanager_mode(sqlite_store, monkeypatch: pytest.MonkeyPatch) -> None:
    server, port = create_dbmanager_server("127.0.0.1:0", sqlite_store, max_workers=2)
    server.start()
    try:
        monkeypatch.setenv("TUNERY_TRIAL_NAME", "t")
        monkeypatch.setenv("TUNERY_DBMANAGER_ADDRESS", f"127.0.0.1:{port}")
        report_metrics({"loss": 0.5, "accuracy": "0.75"})
        report_metrics({"loss": 0.25})
    finally:
        server.stop(None).wait()
    rows = [(o.metric_name, o.value, o.step) for o in sqlite_store.get_observations("t")]
    assert sorted(rows) == [("accuracy", "0.75", 0), ("loss", "0.25", 1), ("loss", "0.5", 0)]


def test_unreachable_dbmanager_is_a_push_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNERY_TRIAL_NAME", "t")
    monkeypatch.setenv("TUNERY_DBMANAGER_ADDRESS", "127.0.0.1:1")
    with pytest.raises(PushError, match=r"127\.0\.0\.1:1"):
        report_metrics({"loss": 0.5}, timeout=0.5)


def test_outside_a_trial(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PushError, match="TUNERY_TRIAL_NAME"):
        report_metrics({"loss": 0.5})


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"loss": "abc"}, "metric 'loss': 'abc' is not a number"),
        ({"loss": True}, "metric 'loss': True is a boolean"),
        ({"loss": None}, "metric 'loss': None"),
        ({"loss": [1.0]}, "metric 'loss': \\[1.0\\] \\(list\\)"),
        ({"": 1.0}, "metric name ''"),
        ({}, "non-empty mapping"),
    ],
)
def test_values_must_be_numbers(
    metrics: dict, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TUNERY_TRIAL_NAME", "t")
    monkeypatch.setenv("TUNERY_METRICS_FILE", str(tmp_path / "m.jsonl"))
    with pytest.raises(InvalidMetricError, match=message):
        report_metrics(metrics)
    with pytest.raises(InvalidMetricError, match="step must be a non-negative int"):
        report_metrics({"loss": 1.0}, step=-1)
    assert not (tmp_path / "m.jsonl").exists()


def test_metric_text() -> None:
    assert metric_text("m", 3) == "3"
    assert metric_text("m", 0.1) == "0.1"
    assert metric_text("m", 1e-05) == "1e-05"
    assert metric_text("m", " 2.5 ") == "2.5"
    assert metric_text("m", np.float64(0.125)) == "0.125"
    assert metric_text("m", np.int32(7)) == "7"
    assert metric_text("m", float("inf")) == "inf"


TRAINER = """
import time
from metrics_collector.push import report_metrics
for epoch in range(200):
    report_metrics({"loss": 1.0 / (epoch + 1)}, step=epoch)
    time.sleep(0.02)
"""


def test_pushed_metrics_drive_early_stopping(tmp_path: Path, memory_store) -> None:
    """Local mode: the controller tails the metrics file; the stopper sees pushed metrics."""
    path = tmp_path / "trial.metrics.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TUNERY_TRIAL_NAME": "t"}
    env["TUNERY_METRICS_FILE"] = str(path)
    env.pop("TUNERY_DB_URL", None)
    proc = subprocess.Popen([sys.executable, "-c", TRAINER], env=env, cwd=ROOT)
    stops: list[StopDecision] = []

    def stop_after_five(observations: Sequence[Observation]) -> StopDecision:
        return StopDecision(len(observations) >= 5, message="enough")

    def on_stop(decision: StopDecision) -> None:
        stops.append(decision)
        proc.send_signal(signal.SIGTERM)

    objective = Objective(ObjectiveType.MINIMIZE, "loss")
    collector = TrialCollector(
        memory_store,
        "t",
        objective,
        JsonLinesParser(["loss"]),
        stop_check=stop_after_five,
        on_stop=on_stop,
    )
    try:
        FileTailer(
            path, collector.feed, is_done=lambda: proc.poll() is not None, poll_interval=0.01
        ).run()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    summary = collector.finish()
    assert [d.message for d in stops] == ["enough"]
    assert proc.returncode == -signal.SIGTERM
    steps = [o.step for o in memory_store.get_observations("t")]
    assert 5 <= len(steps) < 200 and steps == list(range(len(steps)))
    assert summary.objective_value == 1.0 / len(steps)
