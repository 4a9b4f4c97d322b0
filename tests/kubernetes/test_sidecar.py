"""The collector sidecar and the trial wrapper, rendered and (the wrapper) run for real."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller.sidecar import (
    COLLECTOR_UID,
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
        "-path", "/var/log/katib/metrics.log",
        "--pid-file", "/var/log/katib/main.pid", "--marker-dir", "/var/log/katib",
        "-format", "TEXT", "-s-earlystop", "es:6788",
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
    # a container without a command is no error any more: the collector follows its log
    # (tests/kubernetes/test_trial_kinds.py)
    with pytest.raises(SidecarError, match="matches no container"):
        inject(spec=spec(trialTemplate={"primaryContainerName": "other"}))
    with pytest.raises(SidecarError, match="primaryPodLabels"):
        inject(spec=spec(trialTemplate={"primaryContainerName": "main",
                                        "primaryPodLabels": {"role": "x"}}))  # fmt: skip
    trainjob = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
                "spec": {"trainer": {"command": ["python"]}}}  # fmt: skip
    with pytest.raises(SidecarError, match="Push"):
        inject(trainjob)
    with pytest.raises(SidecarError, match="PrometheusMetric, Custom or Push"):
        collector_plan({"metricsCollectorSpec": {"collector": {"kind": "Unknown"}}})


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
    pid = (tmp_path / "main.pid").read_text().strip()
    assert (tmp_path / f"{pid}.pid").read_text().strip() == "completed"  # for the collector


def test_wrapper_passes_arguments_verbatim(tmp_path: Path) -> None:
    hostile = "x'; touch pwned; echo '$(id) `id` \"q\""
    result = run_wrapper(tmp_path, ["python3", "-c", "import sys; print(sys.argv[1])", hostile])
    assert result.returncode == 0 and result.stdout.strip() == hostile
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_wrapper_exits_zero_when_the_collector_stopped_the_trial(tmp_path: Path) -> None:
    # what the collector does: mark <main pid>.pid early-stopped, then stop the trial
    stop = 'echo early-stopped > "$TUNERY_METRICS_DIR/$(cat "$TUNERY_METRICS_DIR/main.pid").pid"'
    result = run_wrapper(tmp_path, ["sh", "-c", f"{stop}; kill -TERM $$"], tee=False)
    assert result.returncode == 0
    assert "stopped early" in result.stdout
    result = run_wrapper(tmp_path, ["sh", "-c", "exit 5"], tee=False)
    assert result.returncode == 5 and "stopped early" not in result.stdout


RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _collector(out: dict[str, Any]) -> dict[str, Any]:
    pod = out["spec"]["template"]["spec"]
    (collector,) = [
        c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] != "main"
    ]
    return collector


def _with_security(pod: dict[str, Any] | None, main: dict[str, Any] | None) -> dict[str, Any]:
    job = copy.deepcopy(JOB)
    if pod is not None:
        job["spec"]["template"]["spec"]["securityContext"] = pod
    if main is not None:
        job["spec"]["template"]["spec"]["containers"][0]["securityContext"] = main
    return job


def test_the_collector_is_restricted_and_runs_as_the_image_user_by_default() -> None:
    for native in (True, False):
        settings = CollectorSettings("i", db_manager_address="db:1", native_sidecar=native)
        out = inject_collector(
            JOB, trial_name="t1", experiment_name="e", spec=spec(), settings=settings
        )
        assert _collector(out)["securityContext"] == {**RESTRICTED, "runAsUser": COLLECTOR_UID}
    # the trial's own container is left as the template wrote it
    assert "securityContext" not in out["spec"]["template"]["spec"]["containers"][0]
    assert "securityContext" not in out["spec"]["template"]["spec"]


def test_the_collector_runs_as_the_trials_user() -> None:
    # the pod's user and group
    out = inject(_with_security({"runAsUser": 1000, "runAsGroup": 3000}, None))
    assert _collector(out)["securityContext"] == {**RESTRICTED, "runAsUser": 1000,
                                                  "runAsGroup": 3000}  # fmt: skip
    # the primary container's own user wins over the pod's
    out = inject(_with_security({"runAsUser": 1000}, {"runAsUser": 2000}))
    assert _collector(out)["securityContext"]["runAsUser"] == 2000
    assert "runAsGroup" not in _collector(out)["securityContext"]
    # a root trial: the collector stays non-root
    out = inject(_with_security({"runAsUser": 0, "runAsGroup": 0}, None))
    context = _collector(out)["securityContext"]
    assert context["runAsUser"] == COLLECTOR_UID and "runAsGroup" not in context
    # not an integer (e.g. an unsubstituted value): not copied
    out = inject(_with_security({"runAsUser": "1000"}, None))
    assert _collector(out)["securityContext"]["runAsUser"] == COLLECTOR_UID


def test_restricted_trial_pods_stay_restricted() -> None:
    """A restricted template passes with the collector; another fails on its own containers."""
    from pod_security import restricted_violations

    compliant = _with_security(
        {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    )
    assert restricted_violations(inject(compliant)["spec"]["template"]["spec"]) == []
    problems = restricted_violations(inject()["spec"]["template"]["spec"])
    assert problems and all("(main)" in p for p in problems), problems


def test_a_custom_collector_keeps_its_own_security_context() -> None:
    custom = {"name": "my-collector", "image": "mine", "securityContext": {"runAsUser": 5}}
    collector = {"collector": {"kind": "Custom", "customCollector": custom}}
    out = inject(spec=spec(metricsCollectorSpec=collector))
    assert _collector(out)["securityContext"] == {"runAsUser": 5}


def test_a_tls_secret_reaches_the_collector_and_the_trial() -> None:
    import dataclasses

    from controller.operator.core import OperatorSettings

    settings = OperatorSettings.from_env(
        {"TUNERY_COLLECTOR_TLS_SECRET": "tunery-tls", "TUNERY_COLLECTOR_TLS_MUTUAL": "true"}
    ).collector()
    assert (settings.tls_secret, settings.tls_mutual) == ("tunery-tls", True)
    settings = dataclasses.replace(SETTINGS, tls_secret="tunery-tls", tls_mutual=True)
    tls_env = {
        "TUNERY_TLS_CA": "/etc/tunery/tls/ca.crt",
        "TUNERY_TLS_CERT": "/etc/tunery/tls/tls.crt",
        "TUNERY_TLS_KEY": "/etc/tunery/tls/tls.key",
    }
    mount = {"name": "tunery-tls", "mountPath": "/etc/tunery/tls", "readOnly": True}
    for kind in ("StdOut", "Push"):
        out = inject_collector(
            JOB,
            trial_name="t1",
            experiment_name="e",
            spec=spec(metricsCollectorSpec={"collector": {"kind": kind}}),
            settings=settings,
        )
        pod = out["spec"]["template"]["spec"]
        assert {"name": "tunery-tls", "secret": {"secretName": "tunery-tls"}} in pod["volumes"]
        containers = pod["containers"] + pod.get("initContainers", [])
        assert len(containers) == (2 if kind == "StdOut" else 1)
        for container in containers:  # the trial (report_metrics) and the collector
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert {k: env.get(k) for k in tls_env} == tls_env, (kind, container["name"])
            assert mount in container["volumeMounts"]
    # without the setting nothing is added
    assert "TUNERY_TLS_CA" not in str(inject())
