"""TensorFlowEvent and PrometheusMetric collectors rendered into a trial pod, then the pod's
two halves (the wrapped primary container and the collector) run as local processes with the
rendered command lines, pushing to a real DBManager."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from controller.sidecar import MARKER_DIR, CollectorSettings, inject_collector
from metrics_collector.dbmanager import create_dbmanager_server

ROOT = Path(__file__).resolve().parents[2]

SETTINGS = CollectorSettings(image="tunery:test", db_manager_address="db:6789")

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": "python", "command": ["python3", "train.py"],
         "args": ["--log-path=/mnist-with-summaries-logs"]},
    ]}}},
}  # fmt: skip


def _spec(collector: dict[str, Any], metrics: tuple[str, ...] = ("accuracy",)) -> dict[str, Any]:
    return {
        "objective": {"type": "maximize", "objectiveMetricName": metrics[0],
                      "additionalMetricNames": list(metrics[1:])},
        "trialTemplate": {"primaryContainerName": "main"},
        "metricsCollectorSpec": collector,
    }  # fmt: skip


def _render(spec: dict[str, Any], job: dict[str, Any] = JOB) -> tuple[dict, dict, dict]:
    out = inject_collector(job, trial_name="t1", experiment_name="e", spec=spec, settings=SETTINGS)
    pod = out["spec"]["template"]["spec"]
    (sidecar,) = pod["initContainers"]
    return pod, pod["containers"][0], sidecar


TFEVENT = {
    "source": {"fileSystemPath": {"path": "/mnist-with-summaries-logs/test", "kind": "Directory"}},
    "collector": {"kind": "TensorFlowEvent"},
}
PROMETHEUS = {
    "source": {"httpGet": {"port": 9100, "path": "/stats"}},
    "collector": {"kind": "PrometheusMetric"},
}


def test_tfevent_collector_of_katibs_tfjob_example() -> None:
    pod, main, sidecar = _render(_spec(TFEVENT))
    logs = "/mnist-with-summaries-logs/test"
    assert sidecar["name"] == "metrics-collector"
    assert sidecar["args"] == [
        "-t", "t1", "-m", "accuracy", "-o-type", "maximize", "-s-db", "db:6789",
        "-path", logs, "--pid-file", f"{logs}/main.pid", "--marker-dir", logs,
        "--kind", "TensorFlowEvent",
    ]  # fmt: skip
    mount = {"name": "metrics-volume", "mountPath": logs}
    assert mount in main["volumeMounts"] and sidecar["volumeMounts"] == [mount]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["TUNERY_METRICS_DIR"] == logs and env["TUNERY_TEE_OUTPUT"] == "0"
    assert "TUNERY_METRICS_FILE" not in env  # report_metrics goes to the DBManager
    assert main["command"][-2:] == ["train.py", "--log-path=/mnist-with-summaries-logs"]
    assert pod["shareProcessNamespace"] is True


def test_prometheus_collector_scrapes_the_pods_own_port() -> None:
    _, main, sidecar = _render(_spec(PROMETHEUS))
    assert sidecar["args"] == [
        "-t", "t1", "-m", "accuracy", "-o-type", "maximize", "-s-db", "db:6789",
        "-path", "http://127.0.0.1:9100/stats", "--pid-file", f"{MARKER_DIR}/main.pid",
        "--marker-dir", MARKER_DIR, "--kind", "PrometheusMetric",
    ]  # fmt: skip
    assert {"name": "metrics-volume", "mountPath": MARKER_DIR} in main["volumeMounts"]
    assert main["command"][:2] == ["sh", "-c"]  # wrapped: the collector sees it end
    defaulted = _render(_spec({"collector": {"kind": "PrometheusMetric"}}))[2]
    assert "http://127.0.0.1:8080/metrics" in defaulted["args"]


TRAIN_TFEVENTS = textwrap.dedent(
    """
    import sys, time
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logs = sys.argv[1].split("=", 1)[1]
    for sub, base in (("train", 0.5), ("test", 0.0)):
        w = EventFileWriter(logs + "/" + sub)
        for step in range(3):
            value = Summary.Value(tag="accuracy", simple_value=base + step / 10)
            w.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=[value])))
            w.flush()
            time.sleep(0.1)
        w.close()
    """
)

SERVE = textwrap.dedent(
    """
    import sys, time
    from prometheus_client import Gauge, start_http_server

    start_http_server(int(sys.argv[1]), addr="127.0.0.1")
    g = Gauge("accuracy", "accuracy")
    for epoch in range(2):
        g.set(0.3 + epoch / 10)
        time.sleep(1.5)
    """
)


def _run_pod(
    tmp_path: Path, main: dict, sidecar: dict, mapping: dict[str, str], store
) -> subprocess.CompletedProcess[str]:
    """Run the rendered halves with their folders moved under ``tmp_path``."""

    def move(text: str) -> str:
        for old, new in mapping.items():
            text = text.replace(old, new)
        return text

    server, port = create_dbmanager_server("127.0.0.1:0", store, max_workers=2)
    server.start()
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.update({e["name"]: move(e["value"]) for e in main["env"]})
        argv = [move(c) for c in main["command"]]
        argv = [sys.executable if a == "python3" else a for a in argv]
        trial = subprocess.Popen(argv, env=env, cwd=tmp_path)
        args = [move(a) for a in sidecar["args"]]
        args[args.index("-s-db") + 1] = f"127.0.0.1:{port}"
        collector = subprocess.run(
            [sys.executable, "-m", "metrics_collector", *args],
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert trial.wait(30) == 0
        return collector
    finally:
        server.stop(None).wait()


@pytest.mark.slow
def test_rendered_tfevent_pod_collects_only_the_configured_folder(
    tmp_path: Path, sqlite_store
) -> None:
    (tmp_path / "train.py").write_text(TRAIN_TFEVENTS)
    _, main, sidecar = _render(_spec(TFEVENT))
    logs = tmp_path / "logs"
    collector = _run_pod(
        tmp_path, main, sidecar, {"/mnist-with-summaries-logs": str(logs)}, sqlite_store
    )
    assert collector.returncode == 0, collector.stderr
    rows = sqlite_store.get_observations("t1", "accuracy")
    assert [(o.step, o.numeric) for o in rows] == [
        (s, pytest.approx(s / 10)) for s in range(3)
    ]  # test/ only; train/ is outside the configured folder
    assert (logs / "test" / "main.pid").exists()


@pytest.mark.slow
def test_rendered_prometheus_pod_is_scraped_until_the_trial_ends(
    tmp_path: Path, sqlite_store
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "serve.py").write_text(SERVE)
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"containers": [
            {"name": "main", "image": "python", "command": ["python3", "serve.py", str(port)]},
        ]}}},
    }  # fmt: skip
    collector_spec = {"source": {"httpGet": {"port": port}}, "collector": PROMETHEUS["collector"]}
    _, main, sidecar = _render(_spec(collector_spec), job)
    collector = _run_pod(tmp_path, main, sidecar, {MARKER_DIR: str(tmp_path / "m")}, sqlite_store)
    assert collector.returncode == 0, collector.stderr
    rows = sqlite_store.get_observations("t1", "accuracy")
    assert [(o.step, o.numeric) for o in rows] == [(0, 0.3), (1, pytest.approx(0.4))]
    assert (tmp_path / "m" / "main.pid").exists()
