"""Kubernetes trial runner: each trial's job is a Kubernetes object (batch/v1 Job or any kind).

Used by the operator (``controller.operator``), which builds one runner per experiment and
hands it to the reconciler. :meth:`KubernetesRunner.start` takes the rendered trial job, adds
the trial labels, ``KATIB_TRIAL_NAME`` and the metrics collector (``controller.sidecar``),
sets the Trial custom resource as its controlling owner, and creates it. ``nvidia.com/gpu``
requests and limits pass through unchanged: the scheduler places GPUs in a cluster.
:meth:`poll` reads the object and evaluates the trial template's GJSON failure condition, then
its success condition, on it (Katib's order). A job whose creation was never confirmed (the
handle has no ``uid``: the operator stopped between recording and creating it) is
``NOT_STARTED``, so the trial starts again; a created job that vanished (deleted by hand) is
``JOB_NOT_FOUND`` and :meth:`recreate` creates it again from the recorded body, at most
:data:`MAX_RECREATIONS` times, as Katib re-creates a Trial's missing job. :meth:`stop` and
:meth:`delete_job` delete it with foreground propagation, so its pods go first.

Any kind works: the REST path comes from a table of the usual training kinds or, for others,
API discovery. :class:`KubeApi` is the small raw-JSON client both this module and the operator
use (the generated typed models are neither needed nor wanted for arbitrary kinds).

Errors::

    KubeError(Exception)                 an API call failed: ``status``, ``reason``, ``message``
     └── KubeUnavailableError(KubeError)  no answer, 429 or 5xx: retry later
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import urllib3
from kubernetes import client as k8s_client

from controller import checkpoints, gjson
from controller.runners.base import (
    JOB_NOT_FOUND,
    NOT_STARTED,
    Handle,
    LaunchError,
    RunnerUnavailableError,
    RunPhase,
    RunState,
    TrialLaunch,
    TrialRunner,
)
from controller.sidecar import (
    EXPERIMENT_LABEL,
    TRIAL_LABEL,
    CollectorSettings,
    SidecarError,
    inject_collector,
)

log = logging.getLogger(__name__)

KNOWN_PLURALS: Mapping[tuple[str, str], str] = {
    ("batch", "Job"): "jobs",
    ("kubeflow.org", "PyTorchJob"): "pytorchjobs",
    ("kubeflow.org", "TFJob"): "tfjobs",
    ("kubeflow.org", "XGBoostJob"): "xgboostjobs",
    ("kubeflow.org", "MPIJob"): "mpijobs",
    ("kubeflow.org", "PaddleJob"): "paddlejobs",
    ("kubeflow.org", "JAXJob"): "jaxjobs",
    ("kubeflow.org", "Experiment"): "experiments",
    ("kubeflow.org", "Trial"): "trials",
    ("kubeflow.org", "Suggestion"): "suggestions",
    ("trainer.kubeflow.org", "TrainJob"): "trainjobs",
    ("jobset.x-k8s.io", "JobSet"): "jobsets",
    ("ray.io", "RayJob"): "rayjobs",
    ("argoproj.io", "Workflow"): "workflows",
    ("tekton.dev", "PipelineRun"): "pipelineruns",
    ("", "Pod"): "pods",
    ("", "Event"): "events",
    ("", "ConfigMap"): "configmaps",
}
"""(API group, kind) -> resource plural, so the usual kinds need no discovery request."""

MAX_RECREATIONS = 3
"""How often a trial's job that vanished while it ran (deleted by hand) is created again
before the trial fails with JobNotFound."""

# Variables of the local runner that mean nothing inside a pod.
_LOCAL_ONLY_ENV = frozenset({"TUNERY_METRICS_FILE", "CUDA_VISIBLE_DEVICES"})


class KubeError(Exception):
    """A Kubernetes API call failed."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


class KubeUnavailableError(KubeError):
    """The API server did not answer, or answered 429/5xx; the call may be retried."""


def split_api_version(api_version: str) -> tuple[str, str]:
    """``"batch/v1"`` -> ``("batch", "v1")``; ``"v1"`` -> ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


class KubeApi:
    """Raw-JSON calls to the Kubernetes API through the official client's configuration.

    Thread-safe (urllib3's pool). Every method raises :class:`KubeError` (or
    :class:`KubeUnavailableError` for transient failures).
    """

    def __init__(self, api_client: k8s_client.ApiClient, *, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self._plurals: dict[tuple[str, str], str] = dict(KNOWN_PLURALS)
        self._lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Sequence[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            method_, url, headers_, body_, _ = self.api_client.param_serialize(
                method,
                path,
                query_params=list(query or []),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api_client.call_api(
                method_, url, header_params=headers_, body=body_, _request_timeout=self.timeout
            )
            data = response.read()
        except k8s_client.ApiException as exc:
            raise self._error(exc.status or 0, exc.reason or "", exc.body or "") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeUnavailableError(0, "Unavailable", f"{method} {path}: {exc}") from None
        text = data.decode("utf-8", "replace") if data else ""
        if not 200 <= response.status <= 299:
            raise self._error(response.status, response.reason or "", text)
        return json.loads(text) if text else None

    @staticmethod
    def _error(status: int, reason: str, body: str) -> KubeError:
        message = body
        try:
            parsed = json.loads(body)
            if isinstance(parsed, Mapping):
                message = str(parsed.get("message") or body)
                reason = str(parsed.get("reason") or reason)
        except ValueError:
            pass
        cls = KubeUnavailableError if status in (0, 429) or status >= 500 else KubeError
        return cls(status, reason, message)

    def plural(self, api_version: str, kind: str) -> str:
        """The resource plural of ``kind`` (table, then API discovery).

        Raises:
            KubeError: 404 when the cluster does not serve that kind.
        """
        group, version = split_api_version(api_version)
        with self._lock:
            known = self._plurals.get((group, kind))
        if known is not None:
            return known
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        listing = self.request("GET", base) or {}
        for resource in listing.get("resources", []):
            if resource.get("kind") == kind and "/" not in resource.get("name", ""):
                with self._lock:
                    self._plurals[(group, kind)] = resource["name"]
                return str(resource["name"])
        raise KubeError(404, "NotFound", f"the cluster serves no kind {kind!r} in {api_version}")

    def path(
        self,
        api_version: str,
        plural: str,
        namespace: str | None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        group, version = split_api_version(api_version)
        parts = [f"/apis/{group}/{version}" if group else f"/api/{version}"]
        if namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)

    # -- verbs ----------------------------------------------------------------------------------

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        plural = self.plural(obj["apiVersion"], obj["kind"])
        path = self.path(obj["apiVersion"], plural, meta.get("namespace"))
        return self.request("POST", path, body=dict(obj))  # type: ignore[no-any-return]

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
        plural = self.plural(api_version, kind)
        return self.request(  # type: ignore[no-any-return]
            "GET", self.path(api_version, plural, namespace, name)
        )

    def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        plural = self.plural(api_version, kind)
        query = [("labelSelector", label_selector)] if label_selector else []
        result = self.request("GET", self.path(api_version, plural, namespace), query=query)
        return list((result or {}).get("items", []))

    def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386): mappings merge, lists and scalars are replaced."""
        plural = self.plural(api_version, kind)
        return self.request(  # type: ignore[no-any-return]
            "PATCH",
            self.path(api_version, plural, namespace, name, subresource),
            body=dict(patch),
            content_type="application/merge-patch+json",
        )

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        propagation: str = "Foreground",
        grace_seconds: int | None = None,
    ) -> bool:
        """Delete; False when it did not exist."""
        plural = self.plural(api_version, kind)
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": propagation,
        }
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        try:
            self.request("DELETE", self.path(api_version, plural, namespace, name), body=body)
        except KubeError as exc:
            if exc.not_found:
                return False
            raise
        return True


def owner_reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A controlling owner reference to ``obj`` (blocking the owner's foreground deletion)."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


OwnerResolver = Callable[[str], Mapping[str, Any] | None]
"""Trial name -> owner reference for its job (the Trial custom resource), or None."""
StopRulesSource = Callable[[str], Sequence[Mapping[str, Any]]]
"""Trial name -> its early-stopping rules (``name``, ``value``, ``comparison``, ``startStep``)."""


class KubernetesRunner(TrialRunner):
    """Runs one experiment's trials as Kubernetes objects in ``namespace``.

    ``spec`` is the experiment's (defaulted) spec: it names the collector, the objective and
    the primary pod labels. ``owner`` gives each job its owner reference (the Trial resource);
    ``stop_rules`` each trial's early-stopping rules for the collector. A pod has its own
    file system: the collector sidecar reads the paths the experiment configures.
    """

    private_collector_files = False

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        spec: Mapping[str, Any],
        collector: CollectorSettings,
        owner: OwnerResolver | None = None,
        stop_rules: StopRulesSource | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.spec = spec
        self.collector = collector
        self.owner = owner
        self.stop_rules = stop_rules
        self.extra_env = dict(extra_env or {})

    # -- building -------------------------------------------------------------------------------

    def build_job(self, launch: TrialLaunch) -> dict[str, Any]:
        """The object :meth:`start` creates for ``launch`` (without the owner reference).

        Raises:
            LaunchError: the collector cannot be added, or the job lacks apiVersion/kind.
        """
        job = copy.deepcopy(dict(launch.job))
        if not job.get("apiVersion") or not job.get("kind"):
            raise LaunchError("the trial job has no apiVersion or kind")
        env = {k: v for k, v in launch.env.items() if k not in _LOCAL_ONLY_ENV}
        env.update(self.extra_env)
        rules = self.stop_rules(launch.trial_name) if self.stop_rules else ()
        try:
            job = inject_collector(
                job,
                trial_name=launch.trial_name,
                experiment_name=launch.experiment_name,
                spec=self.spec,
                settings=self.collector,
                extra_env=env,
                stop_rules=rules,
            )
        except SidecarError as exc:
            raise LaunchError(str(exc)) from None
        if launch.checkpoint is not None:
            try:
                checkpoints.mount_volume(
                    job, launch.primary_container_name, launch.checkpoint, self.collector.image
                )
            except ValueError as exc:
                raise LaunchError(f"{checkpoints.SETTING}: {exc}") from None
        meta = job.setdefault("metadata", {})
        meta["name"] = launch.trial_name
        meta["namespace"] = self.namespace
        labels = meta.setdefault("labels", {})
        labels[TRIAL_LABEL] = launch.trial_name
        labels[EXPERIMENT_LABEL] = launch.experiment_name
        return job

    def prepare_handle(self, launch: TrialLaunch) -> Handle:
        return {
            "apiVersion": str(launch.job.get("apiVersion", "")),
            "kind": str(launch.job.get("kind", "")),
            "namespace": self.namespace,
            "name": launch.trial_name,
            "successCondition": launch.success_condition,
            "failureCondition": launch.failure_condition,
        }

    # -- the TrialRunner interface --------------------------------------------------------------

    def start(self, launch: TrialLaunch) -> Handle:
        job = self.build_job(launch)
        for condition in (launch.success_condition, launch.failure_condition):
            if not condition:
                raise LaunchError(
                    "trialTemplate.successCondition and failureCondition are required for "
                    f"kind {job['kind']!r} (Katib defaults them only for known kinds)"
                )
            try:
                gjson.validate(condition)
            except gjson.GjsonError as exc:
                raise LaunchError(f"condition {condition!r}: {exc}") from None
        try:
            owner = self.owner(launch.trial_name) if self.owner else None
        except KubeUnavailableError as exc:
            raise RunnerUnavailableError(str(exc)) from None
        except KubeError as exc:
            raise LaunchError(f"the Trial resource cannot be read: {exc.message}") from None
        if owner is not None:
            job["metadata"]["ownerReferences"] = [dict(owner)]
        handle = dict(self.prepare_handle(launch))
        try:
            created = self._create(job)
        except KubeError as exc:
            if exc.not_found:
                raise LaunchError(
                    f"the cluster does not serve {job['apiVersion']} {job['kind']}: install "
                    f"its operator/CRD first ({exc.message})"
                ) from None
            raise LaunchError(
                f"the API server rejected the {job['kind']}: {exc.message}"
            ) from None
        handle["uid"] = (created or {}).get("metadata", {}).get("uid", "")
        handle["job"] = job  # what recreate() creates again; dropped once the trial ends
        return handle

    def _create(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``job``; one of that name created before a restart is adopted (read back).

        Raises:
            RunnerUnavailableError: the API server is unreachable.
            KubeError: refused.
        """
        meta = job["metadata"]
        try:
            try:
                return self.api.create(job)
            except KubeError as exc:
                if not exc.conflict or isinstance(exc, KubeUnavailableError):
                    raise
            log.info("job %s/%s exists already; adopting it", self.namespace, meta["name"])
            return self.api.get(job["apiVersion"], job["kind"], self.namespace, meta["name"])
        except KubeUnavailableError as exc:
            raise RunnerUnavailableError(str(exc)) from None

    def recreate(self, handle: Handle) -> Handle | None:
        """Create the vanished job again from the body :meth:`start` recorded, at most
        :data:`MAX_RECREATIONS` times per trial."""
        restarts = int(handle.get("restarts", 0))
        job = handle.get("job")
        if not isinstance(job, Mapping) or restarts >= MAX_RECREATIONS:
            return None
        try:
            created = self._create(job)
        except KubeError as exc:
            log.warning("cannot create the job %s again: %s", handle.get("name"), exc)
            return None
        uid = (created or {}).get("metadata", {}).get("uid", "")
        return {**handle, "uid": uid, "restarts": restarts + 1}

    def read(self, handle: Handle) -> dict[str, Any] | None:
        """The job object, or None when it does not exist."""
        try:
            return self.api.get(
                handle["apiVersion"], handle["kind"], handle["namespace"], handle["name"]
            )
        except KubeUnavailableError as exc:
            raise RunnerUnavailableError(str(exc)) from None
        except KubeError as exc:
            if exc.not_found:
                return None
            raise RunnerUnavailableError(str(exc)) from None

    def poll(self, handle: Handle) -> RunState:
        job = self.read(handle)
        if job is None and not handle.get("uid"):
            # recorded Running but the operator stopped before the create was confirmed
            return RunState(RunPhase.FAILED, NOT_STARTED, "the job was never created")
        if job is None:
            restarts = int(handle.get("restarts", 0))
            again = f", after it was created again {restarts} time(s)" if restarts else ""
            return RunState(
                RunPhase.FAILED,
                JOB_NOT_FOUND,
                f"the {handle.get('kind', 'job')} {handle.get('name')} was deleted before it "
                f"finished{again}",
            )
        uid = handle.get("uid")
        if uid and job.get("metadata", {}).get("uid") not in (None, uid):
            return RunState(
                RunPhase.FAILED,
                "JobReplaced",
                f"the {handle['kind']} {handle['name']} was replaced by another object",
            )
        for phase, condition in (
            (RunPhase.FAILED, handle.get("failureCondition", "")),
            (RunPhase.SUCCEEDED, handle.get("successCondition", "")),
        ):
            if not condition:
                continue
            match = gjson.condition_match(job, condition)
            if match is not None:
                return RunState(
                    phase, str(match.get("reason") or ""), str(match.get("message") or "")
                )
        return RunState(RunPhase.RUNNING)

    def stop(self, handle: Handle, grace_seconds: float = 10.0) -> None:
        self.delete_job(handle, grace_seconds=grace_seconds)

    def delete_job(self, handle: Handle, *, grace_seconds: float | None = None) -> bool:
        """Delete the job and (foreground) its pods; False when it was gone already."""
        if not handle.get("name") or not handle.get("kind"):
            return False
        try:
            return self.api.delete(
                handle["apiVersion"],
                handle["kind"],
                handle["namespace"],
                handle["name"],
                grace_seconds=None if grace_seconds is None else max(0, int(grace_seconds)),
            )
        except KubeUnavailableError as exc:
            raise RunnerUnavailableError(str(exc)) from None
        except KubeError as exc:
            log.warning("cannot delete %s %s: %s", handle["kind"], handle["name"], exc)
            return False
