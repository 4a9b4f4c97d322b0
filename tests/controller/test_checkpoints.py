"""Checkpoint hand-over (controller.checkpoints): the plan from the spec and labels, the local
folder copied from the parent's, the path substituted in the trial, and the Kubernetes
rendering (suggestion PVC with subPath, init container copying the parent's folder)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import checkpoints
from controller.checkpoints import CheckpointPlan, plan_for
from controller.runners.base import LaunchError, TrialLaunch
from controller.runners.kubernetes import KubernetesRunner
from controller.runners.local import _with_checkpoint
from controller.settings_check import load_checked
from controller.sidecar import CollectorSettings
from suggestion.algorithms.pbt import PARENT_LABEL
from tunery.experiment import ExperimentError

SPEC: dict[str, Any] = {
    "algorithm": {
        "algorithmName": "pbt",
        "algorithmSettings": [
            {"name": "suggestion_trial_dir", "value": "/var/log/katib/checkpoints/"},
            {"name": "n_population", "value": "5"},
        ],
    },
    "objective": {"type": "maximize", "objectiveMetricName": "acc"},
}


def job(command: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "main", "image": "python", "command": command}],
                    "restartPolicy": "Never",
                }
            }
        },
    }


def test_the_plan_follows_suggestion_trial_dir_and_the_parent_label() -> None:
    plan = plan_for(SPEC, "exp", "exp-b", {PARENT_LABEL: "exp-a"})
    assert plan == CheckpointPlan(
        "/var/log/katib/checkpoints/", "exp", "exp-b", "exp-a", "exp-pbt"
    )
    assert plan_for(SPEC, "exp", "exp-a", {}).parent is None  # type: ignore[union-attr]
    assert plan_for({"algorithm": {"algorithmName": "random"}}, "exp", "t", {}) is None
    empty = {"algorithm": {"algorithmSettings": [{"name": "suggestion_trial_dir", "value": ""}]}}
    assert plan_for(empty, "exp", "t", {}) is None  # as Katib's webhook: empty means no volume


def test_a_local_trial_starts_from_a_copy_of_its_parents_folder(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "exp"
    parent = logs / "checkpoints" / "exp-a"
    (parent / "sub").mkdir(parents=True)
    (parent / "model.pt").write_bytes(b"weights")
    (parent / "sub" / "state").write_text("7")
    launch = TrialLaunch(
        trial_name="exp-b",
        experiment_name="exp",
        job=job(["python3", "t.py", "--checkpoint=/var/log/katib/checkpoints/"]),
        primary_container_name="main",
        log_path=logs / "exp-b.log",
        base_dir=tmp_path,
        checkpoint=plan_for(SPEC, "exp", "exp-b", {PARENT_LABEL: "exp-a"}),
    )
    stale = logs / "checkpoints" / "exp-b"
    stale.mkdir()
    (stale / "half-written").write_text("x")  # a relaunch starts again from the parent's copy
    out = _with_checkpoint(launch, launch.checkpoint)  # type: ignore[arg-type]
    folder = logs / "checkpoints" / "exp-b"
    assert (folder / "model.pt").read_bytes() == b"weights"
    assert (folder / "sub" / "state").read_text() == "7"
    assert not (folder / "half-written").exists()
    assert (parent / "model.pt").exists()  # the parent keeps its own
    command = out.job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-1] == f"--checkpoint={folder}/"
    assert out.env["TUNERY_CHECKPOINT_DIR"] == str(folder)
    assert out.env["TUNERY_CHECKPOINT_PARENT"] == "exp-a"
    assert launch.job["spec"]["template"]["spec"]["containers"][0]["command"][-1].startswith(
        "--checkpoint=/var/log"
    )  # the launch itself is not modified


def test_a_first_generation_trial_gets_an_empty_folder(tmp_path: Path) -> None:
    plan = plan_for(SPEC, "exp", "exp-a", {})
    assert plan is not None
    folder = checkpoints.prepare_local(plan, tmp_path / "checkpoints")
    assert folder.is_dir() and not any(folder.iterdir())


def test_a_missing_primary_container_is_a_launch_error(tmp_path: Path) -> None:
    launch = TrialLaunch(
        "exp-b", "exp", job(["x"]), "nope", tmp_path / "exp-b.log", tmp_path,
        checkpoint=plan_for(SPEC, "exp", "exp-b", {}),
    )  # fmt: skip
    with pytest.raises(LaunchError, match="suggestion_trial_dir: primaryContainerName 'nope'"):
        _with_checkpoint(launch, launch.checkpoint)  # type: ignore[arg-type]


# -- Kubernetes ---------------------------------------------------------------------------------


def build(labels: dict[str, str]) -> dict[str, Any]:
    runner = KubernetesRunner(
        None,  # type: ignore[arg-type]  # build_job talks to no API
        namespace="team-a",
        spec={
            **SPEC,
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
            "trialTemplate": {"primaryContainerName": "main"},
        },
        collector=CollectorSettings("tunery:test", db_manager_address="db:6789"),
    )
    launch = TrialLaunch(
        trial_name="exp-b",
        experiment_name="exp",
        job=job(["python3", "t.py", "--checkpoint=/var/log/katib/checkpoints/"]),
        primary_container_name="main",
        log_path=Path("unused.log"),
        base_dir=Path("."),
        checkpoint=plan_for(SPEC, "exp", "exp-b", labels),
    )
    return runner.build_job(launch)


def test_kubernetes_mounts_the_suggestion_volume_as_katib_does() -> None:
    pod = build({PARENT_LABEL: "exp-a"})["spec"]["template"]["spec"]
    assert {"name": "suggestion-volume", "persistentVolumeClaim": {"claimName": "exp-pbt"}} in pod[
        "volumes"
    ]
    (main,) = [c for c in pod["containers"] if c["name"] == "main"]
    assert {
        "name": "suggestion-volume",
        "mountPath": "/var/log/katib/checkpoints/",
        "subPath": "exp/exp-b",
    } in main["volumeMounts"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["TUNERY_CHECKPOINT_DIR"] == "/var/log/katib/checkpoints/"
    assert env["TUNERY_CHECKPOINT_PARENT"] == "exp-a"
    (copier,) = [c for c in pod["initContainers"] if c["name"] == "tunery-checkpoint"]
    assert copier["image"] == "tunery:test"
    assert copier["volumeMounts"] == [
        {"name": "suggestion-volume", "mountPath": "/opt/tunery/data"}
    ]
    assert copier["securityContext"]["runAsNonRoot"] is True


def test_the_init_container_copies_the_parents_folder(tmp_path: Path) -> None:
    """Run the rendered script on a local tree standing in for the volume."""
    pod = build({PARENT_LABEL: "exp-a"})["spec"]["template"]["spec"]
    (copier,) = [c for c in pod["initContainers"] if c["name"] == "tunery-checkpoint"]
    assert copier["command"][:2] == ["sh", "-c"]
    script = copier["command"][2].replace("/opt/tunery/data", shlex.quote(str(tmp_path)))
    (tmp_path / "exp" / "exp-a").mkdir(parents=True)
    (tmp_path / "exp" / "exp-a" / "ckpt").write_text("gen 1")
    (tmp_path / "exp" / "exp-b").mkdir()
    (tmp_path / "exp" / "exp-b" / "stale").write_text("old")
    subprocess.run(["sh", "-c", script], check=True)
    assert (tmp_path / "exp" / "exp-b" / "ckpt").read_text() == "gen 1"
    assert not (tmp_path / "exp" / "exp-b" / "stale").exists()
    first = build({})["spec"]["template"]["spec"]
    (copier,) = [c for c in first["initContainers"] if c["name"] == "tunery-checkpoint"]
    assert "cp " not in copier["command"][2]  # no parent: an empty folder


# -- Katib's published example ------------------------------------------------------------------

KATIB_EXAMPLE = Path(__file__).parents[1] / "tunery" / "experiments" / "valid" / "simple-pbt.yaml"


def test_katibs_simple_pbt_yaml_is_accepted_with_its_settings() -> None:
    experiment = load_checked(KATIB_EXAMPLE)
    assert experiment.spec.algorithm.algorithm_name == "pbt"


def test_a_pbt_experiment_missing_katibs_required_settings_is_refused() -> None:
    document = yaml.safe_load(KATIB_EXAMPLE.read_text())
    document["spec"]["algorithm"]["algorithmSettings"] = [{"name": "n_population", "value": "4"}]
    with pytest.raises(ExperimentError, match=r"Param\(n_population\) should be >= 5"):
        load_checked(document)
    document["spec"]["algorithm"]["algorithmSettings"] = [{"name": "n_population", "value": "5"}]
    with pytest.raises(
        ExperimentError,
        match="Required params missing: suggestion_trial_dir, truncation_threshold",
    ):
        load_checked(document)


def test_local_checkpoint_folders_are_owner_only(tmp_path: Path) -> None:
    plan = plan_for(SPEC, "exp", "exp-a", {})
    assert plan is not None
    root = tmp_path / "logs" / "exp" / "checkpoints"
    folder = checkpoints.prepare_local(plan, root)
    for path in (tmp_path / "logs", tmp_path / "logs" / "exp", root, folder):
        assert path.stat().st_mode & 0o777 == 0o700, path
