"""A stateful fake Kubernetes API server for the operator's tests, on a real local port.

kmock's ``KubernetesEmulator`` stores objects and serves create/get/list/watch/patch/delete
over HTTP; this subclass adds the API server behaviour the operator relies on, so tests talk to
it through the official ``kubernetes`` client exactly as the operator talks to a cluster:

- server-set metadata on create: ``uid``, ``resourceVersion`` (bumped on every write),
  ``creationTimestamp``, ``generation``; ``metadata.namespace`` from the URL, a mismatch is
  400; a duplicate name is 409;
- the status subresource: ``status`` sent to the main resource is dropped (create and patch),
  and a patch of ``.../status`` changes nothing but ``status``;
- ``labelSelector`` on list and watch (``=``, ``==``, ``!=``, ``in``, ``notin``, exists, ``!``);
- garbage collection: deleting an object deletes, transitively, every object that lists it in
  ``ownerReferences`` (what the kube-controller-manager does shortly after, with any
  propagation policy);
- admission: ``batch/v1`` Jobs and core objects are validated against the Kubernetes OpenAPI
  schema (kubernetes-validate) and rejected with 422 as the API server would.

Not emulated: PUT (replace), strategic-merge semantics for lists (patches merge like JSON merge
patches), resourceVersion preconditions, field selectors, and any controller (no pods are ever
created: tests set job status themselves, as the Job controller would).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import kmock
import kubernetes_validate
from kmock._internal import enums, rendering  # the request model the emulator hands us
from kubernetes import client as k8s_client

STATUS_SUBRESOURCE = frozenset(
    {"jobs", "experiments", "trials", "suggestions", "pytorchjobs", "tfjobs", "mpijobs",
     "xgboostjobs", "trainjobs", "pods", "deployments", "statefulsets"}
)  # fmt: skip
VALIDATED_GROUPS = frozenset({"", "batch", "apps"})
RESOURCES = {
    "kubeflow.org/v1beta1/experiments": "Experiment",
    "kubeflow.org/v1beta1/trials": "Trial",
    "kubeflow.org/v1beta1/suggestions": "Suggestion",
    "kubeflow.org/v1/pytorchjobs": "PyTorchJob",
    "kubeflow.org/v1/tfjobs": "TFJob",
    "batch/v1/jobs": "Job",
    "v1/events": "Event",
    "v1/configmaps": "ConfigMap",
    "v1/pods": "Pod",
}


def _selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics for the forms kubectl and clients send."""
    requirements, depth, current = [], 0, ""
    for ch in selector:  # split on commas outside "in (a,b)"
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            requirements.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        requirements.append(current.strip())
    for req in requirements:
        if " notin " in req or " in " in req:
            key, op, values = req.partition(" notin " if " notin " in req else " in ")
            options = {v.strip() for v in values.strip().strip("()").split(",")}
            present = key.strip() in labels and labels[key.strip()] in options
            if present != (op.strip() == "in"):
                return False
        elif "!=" in req:
            key, _, value = req.partition("!=")
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in req:
            key, _, value = req.partition("==" if "==" in req else "=")
            if labels.get(key.strip()) != value.strip():
                return False
        elif req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


class FaithfulEmulator(kmock.KubernetesEmulator):
    """KubernetesEmulator plus the API-server behaviour listed in the module docstring."""

    _revision: int = 0

    def _next_version(self) -> str:
        self._revision += 1
        return str(self._revision)

    async def _handle(self, request: rendering.Request) -> Any:
        resource = request.resource
        if resource is not None and request.action is not None:
            self._admit(request)
        response = await super()._handle(request)
        if (
            resource is not None
            and request.action == enums.action.DELETE
            and request.name is not None
        ):
            await self._collect_garbage()
        return response

    def _admit(self, request: rendering.Request) -> None:
        plural = request.resource.plural if request.resource else None
        data = request.data
        if request.action == enums.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if request.namespace and meta.get("namespace", request.namespace) != request.namespace:
                raise kmock.KubernetesError(
                    400, "BadRequest", "the namespace of the object does not match the URL"
                )
            if request.namespace:
                meta["namespace"] = request.namespace
            if not meta.get("name"):
                if meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                else:
                    raise kmock.KubernetesError(422, "Invalid", "metadata.name: Required value")
            if plural in STATUS_SUBRESOURCE:
                data.pop("status", None)
            self._validate(request, data)
            meta.update(
                uid=str(uuid.uuid4()),
                resourceVersion=self._next_version(),
                creationTimestamp=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                generation=1,
            )
        elif request.action == enums.action.UPDATE:
            version = self._next_version()
            if isinstance(data, dict):
                if request.subresource == "status":
                    for key in [k for k in data if k != "status"]:
                        del data[key]
                elif plural in STATUS_SUBRESOURCE:
                    data.pop("status", None)
                data.setdefault("metadata", {})["resourceVersion"] = version
            elif isinstance(data, list):
                if request.subresource == "status":
                    data[:] = [op for op in data if str(op.get("path", "")).startswith("/status")]
                elif plural in STATUS_SUBRESOURCE:
                    data[:] = [
                        op for op in data if not str(op.get("path", "")).startswith("/status")
                    ]
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})

    def _validate(self, request: rendering.Request, data: dict[str, Any]) -> None:
        group = request.resource.group if request.resource else None
        if group not in VALIDATED_GROUPS or request.resource.plural == "events":
            return
        try:
            kubernetes_validate.validate(data, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            first = str(exc).splitlines()[0]
            path = ".".join(str(p) for p in exc.path) if hasattr(exc, "path") else ""
            raise kmock.KubernetesError(422, "Invalid", f"{path}: {first}") from None
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError):
            return

    async def _collect_garbage(self) -> None:
        """Delete objects whose owners are gone, until none is left (transitively)."""
        while True:
            async with self._lock:
                live = {obj.get("metadata", {}).get("uid") for obj in self._live_objects()}
                orphans = []
                for key, obj in self._objects.items():
                    if obj.deleted:
                        continue
                    owners = obj.get("metadata", {}).get("ownerReferences") or []
                    if owners and all(o.get("uid") not in live for o in owners):
                        orphans.append(key)
                for key in orphans:
                    resource = key[0]
                    raw = self._objects[key].raw
                    self._objects[key].delete()
                    await self._buses[resource].put({"type": "DELETED", "object": raw})
            if not orphans:
                return

    def _live_objects(self) -> Iterator[Any]:
        for obj in self._objects.values():
            if not obj.deleted:
                yield obj

    async def _serve_list(self, request: rendering.Request) -> Any:
        result = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            result["items"] = [
                item
                for item in result["items"]
                if _selector_matches(selector, item.get("metadata", {}).get("labels") or {})
            ]
        result["metadata"]["resourceVersion"] = str(self._revision)
        return result

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        selector = request.params.get("labelSelector")
        async for event in super()._serve_watch(request):
            if selector and isinstance(event, dict):
                labels = event.get("object", {}).get("metadata", {}).get("labels") or {}
                if not _selector_matches(selector, labels):
                    continue
            yield event


class FakeCluster:
    """The fake API server on 127.0.0.1, served from a background event loop thread.

    Use as a context manager; :meth:`api_client` gives a configured ``kubernetes`` client.
    """

    def __init__(self) -> None:
        self.emulator = FaithfulEmulator()
        for path, kind in RESOURCES.items():
            info = self.emulator.resources[path]
            info.kind = kind
            info.namespaced = True
            info.verbs = {"create", "get", "list", "watch", "patch", "delete"}
            if path.rsplit("/", 1)[-1] in STATUS_SUBRESOURCE:
                info.subresources = {"status"}
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fake-k8s-api", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by __enter__
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> FakeCluster:
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._error is not None or not self.url:
            raise RuntimeError(f"the fake API server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def configuration(self) -> k8s_client.Configuration:
        config = k8s_client.Configuration()
        config.host = self.url
        return config

    def api_client(self) -> k8s_client.ApiClient:
        return k8s_client.ApiClient(self.configuration())
