"""``tunery run`` end to end with the TensorFlowEvent and PrometheusMetric collectors.

Trials write real TensorBoard event files (tensorboard's own writer) or serve a real
Prometheus endpoint (prometheus_client's ``start_http_server``); the experiment's stored
observations are checked value by value.
"""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunery.cli import EXIT_INVALID, main

pytest.importorskip("tensorboard")
pytest.importorskip("prometheus_client")

pytestmark = pytest.mark.slow

TFEVENT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util.tensor_util import make_tensor_proto

    log_path = sys.argv[1].split("=", 1)[1]
    x = float(sys.argv[2])
    train = EventFileWriter(os.path.join(log_path, "train"))
    test = EventFileWriter(os.path.join(log_path, "test"))

    def scalar(tag, value, tensor):
        if not tensor:  # old style, as TF1 and tensorboardX write
            return Summary.Value(tag=tag, simple_value=value)
        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
        return Summary.Value(tag=tag, tensor=make_tensor_proto(value), metadata=meta)

    for step in range(3):
        accuracy = x / 10 + step / 100
        train.add_event(Event(wall_time=time.time(), step=step,
                              summary=Summary(value=[scalar("accuracy", 0.5, False)])))
        test.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=[
            scalar("accuracy", accuracy, True), scalar("loss", 1 - accuracy, False)])))
        test.flush()
        time.sleep(0.2)
    train.close()
    test.close()
    """
)

TFEVENT_EXPERIMENT = """
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: tfevents}
spec:
  objective: {type: maximize, objectiveMetricName: accuracy, additionalMetricNames: [loss]}
  algorithm: {algorithmName: grid}
  parallelTrialCount: 2
  maxTrialCount: 3
  metricsCollectorSpec:
    source: {fileSystemPath: {path: /mnist-with-summaries-logs/test, kind: Directory}}
    collector: {kind: TensorFlowEvent}
  parameters:
    - {name: x, parameterType: int, feasibleSpace: {min: "1", max: "3"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters: [{name: x, reference: x}]
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                command: [PYTHON, train.py, --log-path=/mnist-with-summaries-logs,
                          "${trialParameters.x}"]
"""

PROMETHEUS_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from prometheus_client import Gauge, start_http_server

    port, x = int(sys.argv[1]), float(sys.argv[2])
    accuracy = Gauge("accuracy", "test accuracy")
    loss = Gauge("loss", "loss", ["split"])
    start_http_server(port, addr="127.0.0.1")
    for epoch in range(3):
        accuracy.set(x / 10 + epoch / 100)
        loss.labels(split="train").set(9)
        loss.labels(split="test").set(1 - x / 10 - epoch / 100)
        time.sleep(1.6)  # each value is served for more than a scrape interval
    """
)

PROMETHEUS_EXPERIMENT = """
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: scraped}
spec:
  objective:
    type: maximize
    objectiveMetricName: accuracy
    additionalMetricNames: ['loss{split="test"}']
  algorithm: {algorithmName: grid}
  parallelTrialCount: 1
  maxTrialCount: 2
  metricsCollectorSpec:
    source: {httpGet: {port: PORT, path: /metrics}}
    collector: {kind: PrometheusMetric}
  parameters:
    - {name: x, parameterType: int, feasibleSpace: {min: "1", max: "2"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters: [{name: x, reference: x}]
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                command: [PYTHON, serve.py, "PORT", "${trialParameters.x}"]
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TUNERY_DB_URL", f"sqlite:///{tmp_path}/t.db")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def _observations(tmp_path: Path, experiment: str) -> dict[str, dict[str, list[tuple]]]:
    from tunery.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/t.db")
    try:
        out = {}
        for trial in store.list_trials(experiment):
            rows = store.get_observations(trial.name)
            per: dict[str, list[tuple]] = {}
            for o in rows:
                per.setdefault(o.metric_name, []).append((o.step, o.numeric))
            out[trial.assignment["x"]] = per
        return out
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tensorflow_event_files_of_parallel_trials_are_read_apart(cli, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TFEVENT_SCRIPT)
    (tmp_path / "exp.yaml").write_text(TFEVENT_EXPERIMENT.replace("PYTHON", sys.executable))
    result = cli("run", "exp.yaml")
    assert result.exit_code == 0, result.output
    trials = json.loads(cli("trials", "tfevents", "-o", "json").output)
    assert sorted(t["condition"] for t in trials) == ["Succeeded"] * 3

    observed = _observations(tmp_path, "tfevents")
    assert set(observed) == {"1", "2", "3"}
    for x, metrics in observed.items():
        want = [(step, int(x) / 10 + step / 100) for step in range(3)]
        # only test/ is read (train/ also has "accuracy"), each trial its own folder
        assert [(s, pytest.approx(v, abs=1e-6)) for s, v in want] == sorted(metrics["accuracy"])
        assert [s for s, _ in sorted(metrics["loss"])] == [0, 1, 2]
    best = json.loads(cli("best", "tfevents", "-o", "json").output)
    assert best["parameterAssignments"] == [{"name": "x", "value": 3}]
    # each trial wrote into its own folder next to its log, not into /mnist-with-summaries-logs
    assert not Path("/mnist-with-summaries-logs").exists()
    assert len(list(tmp_path.glob(".tunery/**/*.tfevents/test/events.out.tfevents.*"))) == 3


def test_prometheus_endpoint_of_a_trial_is_scraped_while_it_runs(cli, tmp_path: Path) -> None:
    port = _free_port()
    (tmp_path / "serve.py").write_text(PROMETHEUS_SCRIPT)
    yaml = PROMETHEUS_EXPERIMENT.replace("PYTHON", sys.executable).replace("PORT", str(port))
    (tmp_path / "exp.yaml").write_text(yaml)
    result = cli("run", "exp.yaml")
    assert result.exit_code == 0, result.output

    observed = _observations(tmp_path, "scraped")
    for x, metrics in observed.items():
        values = [v for _, v in sorted(metrics["accuracy"])]
        # every value once (scraped several times each), in order, steps 0, 1, 2
        assert values == pytest.approx([int(x) / 10 + e / 100 for e in range(3)])
        assert [v for _, v in sorted(metrics['loss{split="test"}'])] == pytest.approx(
            [1 - int(x) / 10 - e / 100 for e in range(3)]
        )
    best = json.loads(cli("best", "scraped", "-o", "json").output)
    assert best["parameterAssignments"] == [{"name": "x", "value": 2}]


def test_prometheus_with_parallel_trials_is_refused_locally(cli, tmp_path: Path) -> None:
    yaml = PROMETHEUS_EXPERIMENT.replace("PYTHON", sys.executable).replace("PORT", "8080")
    (tmp_path / "exp.yaml").write_text(
        yaml.replace("parallelTrialCount: 1", "parallelTrialCount: 2")
    )
    result = cli("run", "exp.yaml")
    assert result.exit_code == EXIT_INVALID
    assert "spec.parallelTrialCount: 2: with the PrometheusMetric collector" in result.output


def test_a_trial_that_writes_no_event_file_ends_metrics_unavailable(cli, tmp_path) -> None:
    (tmp_path / "train.py").write_text("print('no summaries')\n")
    yaml = (
        TFEVENT_EXPERIMENT.replace("PYTHON", sys.executable)
        .replace("maxTrialCount: 3", "maxTrialCount: 1")
        .replace("parallelTrialCount: 2", "parallelTrialCount: 1")
    )
    (tmp_path / "exp.yaml").write_text(yaml)
    cli("run", "exp.yaml")
    trials = json.loads(cli("trials", "tfevents", "-o", "json").output)
    assert [t["condition"] for t in trials] == ["MetricsUnavailable"]
    text = json.dumps(trials)
    assert "(nothing was found; expected scalar summaries tagged 'accuracy' in TensorFlow" in text
    assert "no summaries" in text  # the end of the trial's output is quoted


def test_a_shared_event_folder_gives_each_trial_only_its_own_files(cli, tmp_path) -> None:
    shared = tmp_path / "shared"  # named in the script, not in the command: read as is
    script = TFEVENT_SCRIPT.replace(
        'log_path = sys.argv[1].split("=", 1)[1]', f"log_path = {str(shared)!r}"
    )
    (tmp_path / "train.py").write_text(script)
    yaml = (
        TFEVENT_EXPERIMENT.replace("PYTHON", sys.executable)
        .replace("/mnist-with-summaries-logs/test", f"{shared}/test")
        .replace("--log-path=/mnist-with-summaries-logs", "--unused")
        .replace("parallelTrialCount: 2", "parallelTrialCount: 1")
        .replace("maxTrialCount: 3", "maxTrialCount: 2")
    )
    (tmp_path / "exp.yaml").write_text(yaml)
    assert cli("run", "exp.yaml").exit_code == 0
    observed = _observations(tmp_path, "tfevents")
    assert len(observed) == 2
    for x, metrics in observed.items():
        assert [round(v, 6) for _, v in sorted(metrics["accuracy"])] == [
            round(int(x) / 10 + step / 100, 6) for step in range(3)
        ]
    assert len(list(shared.glob("test/events.out.tfevents.*"))) == 2
