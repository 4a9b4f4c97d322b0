"""Admission of TensorFlowEvent and PrometheusMetric experiments, and where a local trial's
event files go (controller.local_collectors; the httpGet checks of tunery.experiment)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from controller.local_collectors import local_problems, prometheus_url, tfevent_plan
from controller.settings_check import load_checked
from tunery.experiment import ExperimentError


def document(collector: dict[str, Any], *, command: list[str] | None = None, **spec: Any):
    doc: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "e"},
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": 1,
            "maxTrialCount": 3,
            "metricsCollectorSpec": collector,
            "parameters": [
                {"name": "lr", "parameterType": "double",
                 "feasibleSpace": {"min": "0.1", "max": "1"}},
            ],
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": [{"name": "lr", "reference": "lr"}],
                "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {
                    "spec": {"containers": [{"name": "main", "image": "t", "command": command
                             or ["python", "train.py", "--lr=${trialParameters.lr}"]}]}}}},
            },
        },
    }  # fmt: skip
    doc["spec"].update(spec)
    return doc


def problems(doc: dict[str, Any]) -> list[str]:
    try:
        load_checked(doc)
    except ExperimentError as e:
        return [str(p) for p in e.errors]
    return []


PROMETHEUS = {"collector": {"kind": "PrometheusMetric"}}
TFEVENT = {"collector": {"kind": "TensorFlowEvent"}}


def test_prometheus_is_accepted_with_katibs_defaults() -> None:
    doc = document(PROMETHEUS)
    assert problems(doc) == []
    assert prometheus_url(load_checked(doc).to_document()) == "http://127.0.0.1:8080/metrics"


@pytest.mark.parametrize(
    ("http_get", "expected"),
    [
        ({"port": 9090, "scheme": "HTTPS"},
         'spec.metricsCollectorSpec.source.httpGet.scheme: "HTTPS" is not supported'),
        ({"port": 9090, "host": "10.0.0.1"},
         'spec.metricsCollectorSpec.source.httpGet.host: "10.0.0.1" is not supported'),
        ({"port": 9090, "httpHeaders": [{"name": "Authorization", "value": "x"}]},
         "spec.metricsCollectorSpec.source.httpGet.httpHeaders: are not supported"),
        ({"port": 70000}, "spec.metricsCollectorSpec.source.httpGet.port: 70000 must be"),
    ],
)  # fmt: skip
def test_prometheus_http_get_the_collector_cannot_honour_is_refused(
    http_get: dict[str, Any], expected: str
) -> None:
    doc = document({**PROMETHEUS, "source": {"httpGet": {"path": "/m", **http_get}}})
    assert any(p.startswith(expected) for p in problems(doc)), problems(doc)
    http = {"port": 1, "scheme": "HTTP", "host": "localhost", "httpHeaders": []}
    ok = document({**PROMETHEUS, "source": {"httpGet": http}})
    assert problems(ok) == []


def test_prometheus_metric_names_must_be_sample_names() -> None:
    doc = document(PROMETHEUS)
    doc["spec"]["objective"]["additionalMetricNames"] = ["train/loss", 'loss{split="test"}']
    assert problems(doc) == [
        "spec.objective.additionalMetricNames[0]: metric name 'train/loss' is not a Prometheus "
        "sample name (letters, digits, _ and :, optionally followed by labels such as "
        '{split="test"})'
    ]


def test_prometheus_runs_one_trial_at_a_time_locally() -> None:
    (problem,) = problems(document(PROMETHEUS, parallelTrialCount=2))
    assert problem.startswith("spec.parallelTrialCount: 2: with the PrometheusMetric collector")


def test_custom_collector_is_refused_locally() -> None:
    doc = document({"collector": {"kind": "Custom", "customCollector": {"name": "c"}}})
    (problem,) = problems(doc)
    assert problem.startswith(
        "spec.metricsCollectorSpec.collector.kind: Custom collectors run only on Kubernetes"
    )


def test_tfevent_without_tensorboard_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name: str, *args: Any, **kwargs: Any):
        if name.startswith("tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    assert problems(document(TFEVENT)) == [
        "spec.metricsCollectorSpec.collector.kind: the TensorFlowEvent collector needs the "
        "tensorboard package: pip install 'tunery[tfevents]'"
    ]


LOG = Path("/state/logs/e/e-abc.log")


def test_tfevent_folder_named_in_the_command_becomes_the_trials_own() -> None:
    katib = {"source": {"fileSystemPath": {"path": "/mnist-with-summaries-logs/test/",
                                           "kind": "Directory"}}, **TFEVENT}  # fmt: skip
    doc = document(katib, command=["python", "mnist.py", "--log-path=/mnist-with-summaries-logs"])
    plan = tfevent_plan(doc, LOG)
    assert plan is not None
    assert plan.replace == ("/mnist-with-summaries-logs", "/state/logs/e/e-abc.tfevents")
    assert plan.directory == Path("/state/logs/e/e-abc.tfevents/test") and not plan.shared
    exact = copy.deepcopy(doc)
    exact["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0][
        "env"
    ] = [{"name": "LOGS", "value": "/mnist-with-summaries-logs/test"}]
    plan = tfevent_plan(exact, LOG)
    assert plan is not None and plan.replace == (
        "/mnist-with-summaries-logs/test",
        "/state/logs/e/e-abc.tfevents",
    )
    assert plan.directory == Path("/state/logs/e/e-abc.tfevents")


def test_tfevent_folder_not_in_the_command_is_read_as_configured() -> None:
    plan = tfevent_plan(document(TFEVENT), LOG)
    assert plan is not None
    assert plan == type(plan)(None, Path("/var/log/katib/tfevent"), shared=True)
    assert tfevent_plan(document(PROMETHEUS), LOG) is None
    assert local_problems(document(TFEVENT)) == []
