"""Pod-producing units inside workflow engines' objects: Argo Workflow templates, Tekton tasks.

Called by :mod:`controller.sidecar` (``pod_units``), which adds the trial labels and the metrics
collector to the unit whose pods carry ``primaryPodLabels``. A batch/v1 Job or a training
operator kind holds Kubernetes pod templates (``...template.spec.containers``); a workflow
engine builds each pod itself from an entry of a list, with its own field names and its own
rules for the pod's container names and labels. Each class here presents one such entry with
the questions the collector asks (the pods' labels, the containers under their pod names, where
volumes and sidecars go, whether the pods can share a process namespace) and edits the
entry in place. Pure functions over the object (camelCase dicts); nothing talks to a cluster.

- Argo ``Workflow`` (argoproj.io): every ``spec.templates[]`` entry with a ``container`` or
  ``script`` runs one pod, labelled with the template's ``metadata.labels`` (and the
  workflow's ``spec.podMetadata.labels``); its container is always named ``main`` in the pod.
  The collector goes into the template's ``sidecars`` (Argo stops them when ``main`` ends),
  the volume into its ``volumes``, and ``shareProcessNamespace`` into its ``podSpecPatch``
  (kept as a JSON string, merged with what the template had).
- Tekton ``PipelineRun`` (tekton.dev): every embedded ``taskSpec`` of
  ``spec.pipelineSpec.tasks[]`` (and ``finally[]``) runs one pod, labelled
  ``tekton.dev/pipelineTask=<task name>`` (and the ``taskSpec.metadata.labels``); each step is
  the pod container ``step-<name>``. The collector goes into ``taskSpec.sidecars``, the volume
  into ``taskSpec.volumes``. Tekton gives a task's pod no shared process namespace (its pod
  template has no such field), so a collector there cannot signal the step: it collects and
  ends on the wrapper's marks, and early stopping is refused at admission
  (:func:`controller.collector_check.kind_problems`). Tasks given by ``taskRef`` and
  pipelines given by ``pipelineRef`` are not visible in the object, so they are no units.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

ARGO_GROUP = "argoproj.io"
TEKTON_GROUP = "tekton.dev"
ARGO_MAIN_CONTAINER = "main"
TEKTON_STEP_PREFIX = "step-"
TEKTON_PIPELINE_TASK_LABEL = "tekton.dev/pipelineTask"


class PodUnit(Protocol):
    """What produces one kind of pod inside a trial's job, as the collector sees it."""

    path: tuple[str, ...]

    @property
    def description(self) -> str: ...

    @property
    def native_sidecars(self) -> bool:
        """Whether the collector may be an init container with ``restartPolicy: Always``."""
        ...

    def labels(self) -> dict[str, str]:
        """The labels the unit's pods will carry (its own and those the engine adds)."""
        ...

    def add_labels(self, labels: Mapping[str, str]) -> None: ...

    def containers(self) -> list[tuple[str, dict[str, Any]]]:
        """(the container's name in the pod, the container as written) of each container."""
        ...

    def taken_names(self) -> set[str]:
        """Names already used by containers and sidecars of the unit's pods."""
        ...

    def pod_security_context(self) -> Mapping[str, Any]:
        """The pod-level ``securityContext`` its pods get ({} when unknown)."""
        ...

    def volumes(self) -> list[dict[str, Any]]:
        """The unit's volume list (created when missing), to append to."""
        ...

    def add_sidecar(self, container: dict[str, Any], native: bool) -> None: ...

    def share_processes(self) -> bool:
        """Give its pods a shared process namespace; False where the engine cannot."""
        ...


def _group(job: Mapping[str, Any]) -> str:
    return str(job.get("apiVersion", "")).rpartition("/")[0]


def _dict(node: Any) -> dict[str, Any]:
    return node if isinstance(node, dict) else {}


@dataclass(frozen=True)
class ArgoTemplate:
    """One ``spec.templates[i]`` of an Argo Workflow that runs a container or a script."""

    path: tuple[str, ...]
    template: dict[str, Any]
    workflow_spec: dict[str, Any]
    field: str
    """``container`` or ``script``."""

    native_sidecars = False  # Argo runs template sidecars as containers and stops them itself

    @property
    def description(self) -> str:
        return f"Argo template {self.template.get('name')!r}"

    def labels(self) -> dict[str, str]:
        pod_meta = _dict(self.workflow_spec.get("podMetadata"))
        own = _dict(self.template.get("metadata"))
        return {
            **{str(k): str(v) for k, v in _dict(pod_meta.get("labels")).items()},
            **{str(k): str(v) for k, v in _dict(own.get("labels")).items()},
        }

    def add_labels(self, labels: Mapping[str, str]) -> None:
        meta = self.template.setdefault("metadata", {})
        meta.setdefault("labels", {}).update(labels)

    def containers(self) -> list[tuple[str, dict[str, Any]]]:
        return [(ARGO_MAIN_CONTAINER, self.template[self.field])]

    def taken_names(self) -> set[str]:
        names = {ARGO_MAIN_CONTAINER, "wait", "init"}  # the executor's own containers
        for key in ("sidecars", "initContainers"):
            names |= {str(c.get("name")) for c in self.template.get(key) or []}
        return names

    def pod_security_context(self) -> Mapping[str, Any]:
        return _dict(self.template.get("securityContext")) or _dict(
            self.workflow_spec.get("securityContext")
        )

    def volumes(self) -> list[dict[str, Any]]:
        return self.template.setdefault("volumes", [])  # type: ignore[no-any-return]

    def add_sidecar(self, container: dict[str, Any], native: bool) -> None:
        self.template.setdefault("sidecars", []).append(container)

    def share_processes(self) -> bool:
        patch = self.template.get("podSpecPatch") or ""
        try:
            loaded = yaml.safe_load(patch) if patch else {}
        except yaml.YAMLError:
            loaded = None
        if not isinstance(loaded, dict):
            raise ValueError(
                "podSpecPatch is not a YAML or JSON object the operator can add "
                "shareProcessNamespace to; write it as JSON (quote {{...}} expressions)"
            )
        merged = {**loaded, "shareProcessNamespace": True}
        self.template["podSpecPatch"] = json.dumps(merged, sort_keys=True)
        return True


@dataclass(frozen=True)
class TektonTask:
    """One pipeline task of a Tekton PipelineRun whose ``taskSpec`` is embedded."""

    path: tuple[str, ...]
    task: dict[str, Any]

    native_sidecars = False  # Tekton runs taskSpec.sidecars as containers and stops them itself

    @property
    def task_spec(self) -> dict[str, Any]:
        return self.task["taskSpec"]  # type: ignore[no-any-return]

    @property
    def description(self) -> str:
        return f"Tekton task {self.task.get('name')!r}"

    def labels(self) -> dict[str, str]:
        own = _dict(_dict(self.task_spec.get("metadata")).get("labels"))
        return {
            **{str(k): str(v) for k, v in own.items()},
            TEKTON_PIPELINE_TASK_LABEL: str(self.task.get("name", "")),
        }

    def add_labels(self, labels: Mapping[str, str]) -> None:
        meta = self.task_spec.setdefault("metadata", {})
        meta.setdefault("labels", {}).update(labels)

    def containers(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (f"{TEKTON_STEP_PREFIX}{s.get('name', '')}", s)
            for s in self.task_spec.get("steps") or []
            if isinstance(s, dict)
        ]

    def taken_names(self) -> set[str]:
        return {name for name, _ in self.containers()} | {
            f"sidecar-{c.get('name')}" for c in self.task_spec.get("sidecars") or []
        }

    def pod_security_context(self) -> Mapping[str, Any]:
        return {}

    def volumes(self) -> list[dict[str, Any]]:
        return self.task_spec.setdefault("volumes", [])  # type: ignore[no-any-return]

    def add_sidecar(self, container: dict[str, Any], native: bool) -> None:
        self.task_spec.setdefault("sidecars", []).append(container)

    def share_processes(self) -> bool:
        return False


def sidecar_pod_name(unit: PodUnit, name: str) -> str:
    """The name a sidecar called ``name`` has in the unit's pods (Tekton prefixes it)."""
    return f"sidecar-{name}" if isinstance(unit, TektonTask) else name


def workflow_units(job: Mapping[str, Any]) -> list[PodUnit]:
    """The pod-producing entries of an Argo Workflow or a Tekton PipelineRun; [] otherwise."""
    group, kind = _group(job), job.get("kind")
    spec = _dict(job.get("spec"))
    if group == ARGO_GROUP and kind == "Workflow":
        return list(_argo_templates(spec))
    if group == TEKTON_GROUP and kind == "PipelineRun":
        return list(_tekton_tasks(spec))
    return []


def _argo_templates(spec: dict[str, Any]) -> Iterator[PodUnit]:
    for i, template in enumerate(spec.get("templates") or []):
        if not isinstance(template, dict):
            continue
        for field in ("container", "script"):
            if isinstance(template.get(field), dict):
                yield ArgoTemplate(("spec", "templates", str(i)), template, spec, field)
                break


def _tekton_tasks(spec: dict[str, Any]) -> Iterator[PodUnit]:
    pipeline = _dict(spec.get("pipelineSpec"))
    for key in ("tasks", "finally"):
        for i, task in enumerate(pipeline.get(key) or []):
            if isinstance(task, dict) and isinstance(task.get("taskSpec"), dict):
                yield TektonTask(("spec", "pipelineSpec", key, str(i)), task)
