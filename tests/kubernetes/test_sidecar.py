"""The collector sidecar and the trial wrapper, rendered and (the wrapper) run for real."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.sidecar import (
    WRAPPER,
    CollectorSettings,
    SidecarError,
    collector_plan,
    inject_collector,
)

SETTINGS = CollectorSettings(
    image="tunery:test", db_manager_address="db:6789", early_stopping_address="es:6788"
)


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "objective": {"type": "maximize", "objectiveMetricName": "acc",
                      "additionalMetricNames": ["loss"]},
        "trialTemplate": {"primaryContainerName": "main"},
    }  # fmt: skip
    base.update(overrides)
    return base


JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "t1"},
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": "python", "command": ["python3", "train.py"],
         "args": ["--lr=0.1; rm -rf /", "--name=$(HOME)'x\""],
         "resources": {"limits": {"nvidia.com/gpu": 2}}},
    ]}}},
}  # fmt: skip


def inject(job: dict[str, Any] = JOB, **kw: Any) -> dict[str, Any]:
    return inject_collector(
        job, trial_name="t1", experiment_name="e", spec=kw.pop("spec", spec()), settings=SETTINGS,
        **kw,
    )  # fmt: skip


def test_stdout_collector_is_a_native_sidecar_with_katib_flags() -> None:
    out = inject(spec=spec(earlyStopping={"algorithmName": "medianstop"}))
    pod = out["spec"]["template"]
    assert pod["metadata"]["labels"] == {"katib.kubeflow.org/trial": "t1",
                                         "katib.kubeflow.org/experiment": "e"}  # fmt: skip
    (sidecar,) = pod["spec"]["initContainers"]
    assert sidecar["name"] == "metrics-logger-and-collector"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"] == [
        "-t", "t1", "-m", "acc;loss", "-o-type", "maximize", "-s-db", "db:6789",
        "-path", "/var/log/katib/metrics.log", "-format", "TEXT", "-s-earlystop", "es:6788",
    ]  # fmt: skip
    main = pod["spec"]["containers"][0]
    assert main["resources"] == {"limits": {"nvidia.com/gpu": 2}}  # passed through unchanged
    assert {"name": "metrics-volume", "mountPath": "/var/log/katib"} in main["volumeMounts"]
    assert pod["spec"]["volumes"] == [{"name": "metrics-volume", "emptyDir": {}}]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["KATIB_TRIAL_NAME"] == "t1" and env["TUNERY_TEE_OUTPUT"] == "1"
    # the original argv follows the fixed wrapper untouched: no value is re-quoted
    assert main["command"] == ["sh", "-c", WRAPPER, "tunery-trial", "python3", "train.py",
                               "--lr=0.1; rm -rf /", "--name=$(HOME)'x\""]  # fmt: skip
    assert "args" not in main
    assert JOB["spec"]["template"]["spec"]["containers"][0]["command"] == ["python3", "train.py"]


def test_the_wrapper_has_nothing_the_kubelet_would_expand() -> None:
    assert "$(" not in WRAPPER and "$$" not in WRAPPER


def test_push_adds_only_the_trial_name() -> None:
    out = inject(spec=spec(metricsCollectorSpec={"collector": {"kind": "Push"}}))
    pod = out["spec"]["template"]["spec"]
    assert "initContainers" not in pod and "volumes" not in pod
    assert pod["containers"][0]["command"] == ["python3", "train.py"]
    assert pod["containers"][0]["env"] == [{"name": "KATIB_TRIAL_NAME", "value": "t1"}]


def test_file_collector_and_plain_container_mode() -> None:
    collector = {"collector": {"kind": "File"}, "source": {"fileSystemPath": {
        "path": "/out/metrics.json", "kind": "File", "format": "JSON"}}}  # fmt: skip
    settings = CollectorSettings(image="i", db_manager_address="db:1", native_sidecar=False)
    out = inject_collector(
        JOB, trial_name="t1", experiment_name="e",
        spec=spec(metricsCollectorSpec=collector), settings=settings,
    )  # fmt: skip
    pod = out["spec"]["template"]["spec"]
    names = [c["name"] for c in pod["containers"]]
    assert names == ["main", "metrics-logger-and-collector"]
    sidecar = pod["containers"][1]
    assert "restartPolicy" not in sidecar
    assert sidecar["args"][sidecar["args"].index("-path") + 1] == "/out/metrics.json"
    assert sidecar["args"][sidecar["args"].index("-format") + 1] == "JSON"
    assert sidecar["volumeMounts"] == [{"name": "metrics-volume", "mountPath": "/out"}]


def test_errors_name_the_problem() -> None:
    no_command = copy.deepcopy(JOB)
    del no_command["spec"]["template"]["spec"]["containers"][0]["command"]
    with pytest.raises(SidecarError, match="has no command"):
        inject(no_command)
    with pytest.raises(SidecarError, match="matches no container"):
        inject(spec=spec(trialTemplate={"primaryContainerName": "other"}))
    with pytest.raises(SidecarError, match="primaryPodLabels"):
        inject(spec=spec(trialTemplate={"primaryContainerName": "main",
                                        "primaryPodLabels": {"role": "x"}}))  # fmt: skip
    trainjob = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
                "spec": {"trainer": {"command": ["python"]}}}  # fmt: skip
    with pytest.raises(SidecarError, match="Push"):
        inject(trainjob)
    with pytest.raises(SidecarError, match="PrometheusMetric"):
        collector_plan({"metricsCollectorSpec": {"collector": {"kind": "PrometheusMetric"}}})


def run_wrapper(
    tmp_path: Path, argv: list[str], *, tee: bool = True
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TUNERY_METRICS_DIR=str(tmp_path),
               TUNERY_METRICS_FILE=str(tmp_path / "metrics.log"),
               TUNERY_TEE_OUTPUT="1" if tee else "0")  # fmt: skip
    return subprocess.run(["sh", "-c", WRAPPER, "tunery-trial", *argv], env=env,
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def test_wrapper_tees_output_and_keeps_the_exit_status(tmp_path: Path) -> None:
    script = "import sys; print('acc=0.9'); print('oops', file=sys.stderr); sys.exit(3)"
    result = run_wrapper(tmp_path, ["python3", "-c", script])
    assert result.returncode == 3
    assert result.stdout.splitlines() == ["acc=0.9", "oops"]  # still in kubectl logs
    assert (tmp_path / "metrics.log").read_text().splitlines() == ["acc=0.9", "oops"]
    assert (tmp_path / "tunery.exit").read_text().strip() == "3"


def test_wrapper_passes_arguments_verbatim(tmp_path: Path) -> None:
    hostile = "x'; touch pwned; echo '$(id) `id` \"q\""
    result = run_wrapper(tmp_path, ["python3", "-c", "import sys; print(sys.argv[1])", hostile])
    assert result.returncode == 0 and result.stdout.strip() == hostile
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_wrapper_exits_zero_when_the_collector_stopped_the_trial(tmp_path: Path) -> None:
    (tmp_path / "early-stopped").write_text("median rule\n")
    result = run_wrapper(tmp_path, ["sh", "-c", "kill -TERM $$"], tee=False)
    assert result.returncode == 0
    assert "stopped early" in result.stdout
    result = run_wrapper(tmp_path, ["true"], tee=False)
    assert result.returncode == 0 and "stopped early" not in result.stdout
