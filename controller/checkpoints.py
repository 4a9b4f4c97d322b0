"""Checkpoint hand-over between trials (Katib's ``suggestion_trial_dir``), local and Kubernetes.

Called by the reconciler (:func:`plan_for`, when it prepares a trial's launch), the local runner
(:func:`apply_local`) and the Kubernetes runner (:func:`mount_volume`). When an experiment's
algorithm settings hold a non-empty ``suggestion_trial_dir`` (as Katib's pod webhook checks),
every trial gets its own checkpoint folder at that path; a trial labelled with a parent
(``pbt.suggestion.katib.kubeflow.org/parent``) starts with a copy of the parent's folder.

- Locally the folder is ``<logs>/<experiment>/checkpoints/<trial>/`` (beside the trial logs,
  :func:`controller.paths.checkpoint_root`); the parent's folder is copied there before the
  process starts, and ``suggestion_trial_dir`` in the primary container's command, args and
  env values is replaced by it (as the File collector's path is).
- On Kubernetes, as in Katib, the suggestion volume (the PersistentVolumeClaim
  ``<experiment>-<algorithm>``) is mounted into the primary container at
  ``suggestion_trial_dir`` with ``subPath: <experiment>/<trial>``. Katib's suggestion service
  copies the parent's folder on that volume; tunery's algorithms hold no files, so an init
  container (mounting the whole volume) makes the copy before the trial starts. The operator
  creates the claim (:func:`claim_document`, Katib's default of 5Gi ReadWriteMany) with the
  experiment's Suggestion, unless one of that name exists already (then it is used as is).

The trial sees ``TUNERY_CHECKPOINT_DIR`` (its folder) and ``TUNERY_CHECKPOINT_PARENT`` (the
parent trial's name, when it has one).
"""

from __future__ import annotations

import copy
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.templating import primary_container
from suggestion.algorithms.pbt import PARENT_LABEL
from tunery.files import private_dir

SETTING = "suggestion_trial_dir"
VOLUME_NAME = "suggestion-volume"
"""Katib's ``consts.ContainerSuggestionVolumeName``."""
DATA_MOUNT = "/opt/tunery/data"
"""Where the init container mounts the whole suggestion volume."""


@dataclass(frozen=True)
class CheckpointPlan:
    """One trial's checkpoint folder: where the trial expects it and whose copy it starts as."""

    mount_path: str
    experiment: str
    trial: str
    parent: str | None
    claim_name: str


def plan_for(
    spec: Mapping[str, Any], experiment: str, trial: str, labels: Mapping[str, str]
) -> CheckpointPlan | None:
    """The plan for ``trial`` of the experiment ``spec``; None without ``suggestion_trial_dir``."""
    algorithm = spec.get("algorithm") or {}
    mount = ""
    for setting in algorithm.get("algorithmSettings") or []:
        if setting.get("name") == SETTING and setting.get("value"):
            mount = str(setting["value"])
            break
    if not mount:
        return None
    claim = f"{experiment}-{algorithm.get('algorithmName', '')}"
    return CheckpointPlan(mount, experiment, trial, labels.get(PARENT_LABEL) or None, claim)


def env_for(plan: CheckpointPlan, folder: str) -> dict[str, str]:
    env = {"TUNERY_CHECKPOINT_DIR": folder}
    if plan.parent:
        env["TUNERY_CHECKPOINT_PARENT"] = plan.parent
    return env


# -- local --------------------------------------------------------------------------------------


def prepare_local(plan: CheckpointPlan, root: Path) -> Path:
    """Create ``root/<trial>`` afresh: a copy of ``root/<parent>`` when the parent left one,
    else empty. A relaunch of the same trial starts again from the parent's copy."""
    private_dir(root)  # owner-only, like the logs beside it
    folder = root / plan.trial
    if folder.exists():
        shutil.rmtree(folder)
    parent = root / plan.parent if plan.parent else None
    if parent is not None and parent.is_dir():
        shutil.copytree(parent, folder, symlinks=True)
    else:
        private_dir(folder)
    return folder


def apply_local(
    job: Mapping[str, Any], container_name: str, plan: CheckpointPlan, folder: Path
) -> dict[str, Any]:
    """A copy of ``job`` whose primary container reads ``folder`` where it names
    ``suggestion_trial_dir`` (in command, args and env values)."""
    out: dict[str, Any] = copy.deepcopy(dict(job))
    container = primary_container(out, container_name)
    old, new = plan.mount_path.rstrip("/") or "/", str(folder)
    for key in ("command", "args"):
        if key in container:
            container[key] = [str(item).replace(old, new) for item in container[key]]
    for entry in container.get("env") or []:
        if isinstance(entry.get("value"), str):
            entry["value"] = entry["value"].replace(old, new)
    return out


# -- Kubernetes ---------------------------------------------------------------------------------


def copy_command(plan: CheckpointPlan) -> list[str]:
    """The init container's argv: the trial's folder afresh, a copy of the parent's if any."""
    trial = shlex.quote(f"{DATA_MOUNT}/{plan.experiment}/{plan.trial}")
    script = f"rm -rf {trial} && mkdir -p {trial}"
    if plan.parent:
        parent = shlex.quote(f"{DATA_MOUNT}/{plan.experiment}/{plan.parent}")
        script += f" && if [ -d {parent} ]; then cp -a {parent}/. {trial}/; fi"
    return ["sh", "-c", script]


def mount_volume(
    job: dict[str, Any], container_name: str, plan: CheckpointPlan, image: str
) -> None:
    """Mount the suggestion volume into ``job`` (in place), in each pod template holding the
    primary container: that container at ``suggestion_trial_dir`` (subPath
    ``<experiment>/<trial>``), and an init container running ``image`` (the collector's, which
    has a shell) that prepares that folder.

    Raises:
        ValueError: no pod template has the primary container, or one already has a volume
            named ``suggestion-volume``.
    """
    from controller.sidecar import collector_security_context, pod_templates

    found = False
    for template in pod_templates(job):
        spec = template.template["spec"]
        containers = [c for c in spec["containers"] if c.get("name") == container_name]
        if not containers:
            continue
        found = True
        volumes = spec.setdefault("volumes", [])
        if any(v.get("name") == VOLUME_NAME for v in volumes):
            raise ValueError(
                f"the pod template already has a volume named {VOLUME_NAME!r}, which "
                f"{SETTING} needs; rename it"
            )
        volumes.append(
            {"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": plan.claim_name}}
        )
        for container in containers:
            container.setdefault("volumeMounts", []).append(
                {
                    "name": VOLUME_NAME,
                    "mountPath": plan.mount_path,
                    "subPath": f"{plan.experiment}/{plan.trial}",
                }
            )
            env = container.setdefault("env", [])
            for name, value in env_for(plan, plan.mount_path).items():
                env.append({"name": name, "value": value})
        spec.setdefault("initContainers", []).append(
            {
                "name": "tunery-checkpoint",
                "image": image,
                "command": copy_command(plan),
                "volumeMounts": [{"name": VOLUME_NAME, "mountPath": DATA_MOUNT}],
                # restricted, as the trial's user: the copy is the trial's to write
                "securityContext": collector_security_context(spec, containers[0]),
            }
        )
    if not found:
        raise ValueError(f"no pod template has the primary container {container_name!r}")


CLAIM_STORAGE = "5Gi"
CLAIM_ACCESS_MODES = ("ReadWriteMany",)
"""Katib's default for pbt's suggestion volume (katib-config): trials on any node share it."""


def claim_document(
    spec: Mapping[str, Any], experiment: str, namespace: str, owner: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The suggestion volume's PersistentVolumeClaim (``<experiment>-<algorithm>``, owned by
    the Experiment), or None when the experiment has no ``suggestion_trial_dir``."""
    plan = plan_for(spec, experiment, "", {})
    if plan is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": plan.claim_name,
            "namespace": namespace,
            "labels": {"katib.kubeflow.org/experiment": experiment},
            "ownerReferences": [dict(owner)],
        },
        "spec": {
            "accessModes": list(CLAIM_ACCESS_MODES),
            "resources": {"requests": {"storage": CLAIM_STORAGE}},
        },
    }
