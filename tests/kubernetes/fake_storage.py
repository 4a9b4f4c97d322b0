"""The fake API server's state and write semantics: objects, resourceVersions, history, GC.

Used by :mod:`fake_apiserver` (the HTTP face) and :mod:`fake_cluster` (which installs the CRDs
through :meth:`Storage.create`). One :class:`Storage` is one cluster: served resource types
(built-ins plus installed CRDs), objects, the event history watches resume from, and the
garbage collector. Every refusal is an :class:`ApiError` carrying the ``Status`` the API
server would send. Not thread-safe: the aiohttp event loop is its only caller.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fake_schema
import kubernetes_validate

HISTORY_LIMIT = 50_000
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class ApiError(Exception):
    """A request the API server refuses: becomes a ``Status`` body with ``code``."""

    def __init__(
        self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = dict(details or {})

    def status(self) -> dict[str, Any]:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


@dataclass
class ResourceType:
    """One served resource: its group/version/plural/kind and how writes are checked."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status_subresource: bool = False
    schema: Mapping[str, Any] | None = None  # a CRD's openAPIV3Schema
    builtin: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    printer_columns: tuple[Mapping[str, Any], ...] = ()  # a CRD's additionalPrinterColumns
    default_propagation: str = "Background"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def discovery(self) -> list[dict[str, Any]]:
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        main = {
            "name": self.plural,
            "singularName": self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        entries = [main]
        if self.status_subresource:
            entries.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        return entries


BUILTINS = (
    ResourceType(
        "",
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        status_subresource=True,
        short_names=("ns",),
    ),
    ResourceType("", "v1", "pods", "Pod", status_subresource=True, short_names=("po",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    ResourceType(
        "", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short_names=("pvc",)
    ),
    ResourceType("", "v1", "secrets", "Secret"),
    ResourceType("", "v1", "services", "Service", status_subresource=True, short_names=("svc",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    ResourceType("", "v1", "events", "Event", short_names=("ev",)),
    ResourceType(
        "batch", "v1", "jobs", "Job", status_subresource=True, default_propagation="Orphan"
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        status_subresource=True,
        short_names=("crd", "crds"),
    ),
    ResourceType("events.k8s.io", "v1", "events", "Event", short_names=("ev",)),
)

Key = tuple[str, str, str, str]  # (group, plural, namespace, name)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: mappings merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics: ``=``, ``==``, ``!=``, ``in``, ``notin``, exists,
    ``!``."""
    requirements, depth, current = [], 0, ""
    for ch in selector:
        depth += (ch == "(") - (ch == ")")
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


def field_matches(selector: str, obj: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    for req in filter(None, (r.strip() for r in selector.split(","))):
        negate = "!=" in req
        key, _, value = req.partition("!=" if negate else ("==" if "==" in req else "="))
        actual = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}
        if key.strip() not in actual:
            raise ApiError(400, "BadRequest", f"field label not supported: {key.strip()}")
        if (actual[key.strip()] == value.strip()) == negate:
            return False
    return True


@dataclass
class Watcher:
    rtype: ResourceType
    namespace: str | None
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


class Storage:
    """Objects, the resourceVersion counter, the event history and the live watches."""

    def __init__(self) -> None:
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        self.objects: dict[Key, dict[str, Any]] = {}
        self.revision = 0
        self.compacted = 0  # events up to this revision are no longer in the history
        self.history: list[tuple[int, ResourceType, dict[str, Any]]] = []
        self.watchers: list[Watcher] = []
        for rtype in BUILTINS:
            self.register(rtype)
        for name in SYSTEM_NAMESPACES:
            self.create(
                self.type_of("", "v1", "namespaces"),
                None,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            )

    # -- types ----------------------------------------------------------------------------------

    def register(self, rtype: ResourceType) -> None:
        self.types[(rtype.group, rtype.version, rtype.plural)] = rtype

    def type_of(self, group: str, version: str, plural: str) -> ResourceType:
        rtype = self.types.get((group, version, plural))
        if rtype is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return rtype

    def groups(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for group, version, _ in self.types:
            versions = found.setdefault(group, [])
            if version not in versions:
                versions.append(version)
        return found

    def _install_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            self.register(
                ResourceType(
                    spec["group"],
                    version["name"],
                    names["plural"],
                    names["kind"],
                    namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                    status_subresource="status" in (version.get("subresources") or {}),
                    schema=(version.get("schema") or {}).get("openAPIV3Schema") or {},
                    builtin=False,
                    short_names=tuple(names.get("shortNames") or ()),
                    categories=tuple(names.get("categories") or ()),
                    printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
                )
            )

    def _uninstall_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd.get("spec") or {}
        plural = (spec.get("names") or {}).get("plural")
        for key in [k for k in self.types if k[0] == spec.get("group") and k[2] == plural]:
            del self.types[key]
        for key in [k for k in self.objects if k[0] == spec.get("group") and k[1] == plural]:
            self._remove(key)

    # -- events ---------------------------------------------------------------------------------

    def _bump(self) -> str:
        self.revision += 1
        return str(self.revision)

    def _emit(self, rtype: ResourceType, kind: str, obj: dict[str, Any]) -> None:
        event = {"type": kind, "object": copy.deepcopy(obj)}
        self.history.append((self.revision, rtype, event))
        if len(self.history) > HISTORY_LIMIT:
            dropped = len(self.history) - HISTORY_LIMIT
            self.compacted = self.history[dropped - 1][0]
            del self.history[:dropped]
        namespace = (obj.get("metadata") or {}).get("namespace")
        for watcher in self.watchers:
            if watcher.rtype is rtype and watcher.namespace in (None, namespace):
                watcher.queue.put_nowait(event)

    def replay(
        self, rtype: ResourceType, namespace: str | None, after: int
    ) -> list[dict[str, Any]]:
        """The events of ``rtype`` after revision ``after``.

        Raises:
            ApiError: 410 Expired when the history no longer reaches back that far.
        """
        if after < self.compacted:
            raise ApiError(410, "Expired", f"too old resource version: {after} ({self.revision})")
        return [
            event
            for rev, kind, event in self.history
            if rev > after
            and kind is rtype
            and namespace in (None, event["object"]["metadata"].get("namespace"))
        ]

    # -- reads ----------------------------------------------------------------------------------

    @staticmethod
    def key(rtype: ResourceType, namespace: str | None, name: str) -> Key:
        return (rtype.group, rtype.plural, namespace or "", name)

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.objects.get(self.key(rtype, namespace, name))
        if obj is None:
            raise ApiError(
                404,
                "NotFound",
                f'{_resource(rtype)} "{name}" not found',
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )
        return self._as_version(obj, rtype)

    @staticmethod
    def _as_version(obj: dict[str, Any], rtype: ResourceType) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out["apiVersion"] = rtype.api_version
        return out

    def list(self, rtype: ResourceType, namespace: str | None) -> Iterator[dict[str, Any]]:
        for (group, plural, ns, _), obj in sorted(self.objects.items()):
            if group == rtype.group and plural == rtype.plural and namespace in (None, ns):
                yield self._as_version(obj, rtype)

    # -- writes ---------------------------------------------------------------------------------

    def _admit(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        """Prune/default/validate ``obj`` in place; 422 when invalid."""
        name = (obj.get("metadata") or {}).get("name", "")
        if rtype.schema is not None:
            errors = fake_schema.admit(obj, rtype.schema)
            if errors:
                raise invalid(rtype, name, [(e.field, e.reason, e.message) for e in errors])
            return
        if rtype.group in ("", "batch", "coordination.k8s.io") and rtype.plural != "events":
            try:
                kubernetes_validate.validate(
                    obj, kubernetes_validate.latest_version(), strict=True
                )
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                raise invalid(
                    rtype, name, [(path, "FieldValueInvalid", f"{path}: {exc.message}")]
                ) from None
            except (
                kubernetes_validate.SchemaNotFoundError,
                kubernetes_validate.InvalidSchemaError,
            ):
                return

    def _require_namespace(self, rtype: ResourceType, namespace: str | None) -> None:
        if not rtype.namespaced:
            return
        if (
            self.key(self.type_of("", "v1", "namespaces"), None, namespace or "")
            not in self.objects
        ):
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )

    def create(
        self, rtype: ResourceType, namespace: str | None, body: Any, *, dry_run: bool = False
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        if obj.get("kind") != rtype.kind or obj.get("apiVersion") != rtype.api_version:
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({obj.get('apiVersion')}) and kind "
                f"({obj.get('kind')}) do not match {rtype.api_version} {rtype.kind}",
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise invalid(
                rtype, "", [("metadata", "FieldValueInvalid", "metadata: must be an object")]
            )
        if rtype.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not "
                    "match the namespace sent on the request",
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(
                    rtype,
                    "",
                    [
                        (
                            "metadata.name",
                            "FieldValueRequired",
                            "metadata.name: Required value: name or generateName is required",
                        )
                    ],
                )
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        self._require_namespace(rtype, namespace)
        if rtype.status_subresource or rtype.kind == "Job":
            obj.pop("status", None)
        for server_set in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
        ):
            meta.pop(server_set, None)
        self._admit(rtype, obj)
        key = self.key(rtype, namespace, meta["name"])
        if key in self.objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{_resource(rtype)} "{meta["name"]}" already exists',
                {"name": meta["name"], "group": rtype.group, "kind": rtype.plural},
            )
        if dry_run:
            return obj
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        if rtype.kind == "CustomResourceDefinition":
            self._install_crd(obj)
            obj["status"] = {
                "acceptedNames": obj["spec"]["names"],
                "storedVersions": [
                    v["name"] for v in obj["spec"].get("versions", []) if v.get("storage")
                ],
                "conditions": [
                    {
                        "type": t,
                        "status": "True",
                        "reason": r,
                        "message": "",
                        "lastTransitionTime": _now(),
                    }
                    for t, r in (
                        ("NamesAccepted", "NoConflicts"),
                        ("Established", "InitialNamesAccepted"),
                    )
                ],
            }
        if rtype.kind == "Namespace":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        meta["resourceVersion"] = self._bump()
        self.objects[key] = obj
        self._emit(rtype, "ADDED", obj)
        return self._as_version(obj, rtype)

    def update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        new: Any,
        *,
        subresource: str | None,
        precondition: str | None,
    ) -> dict[str, Any]:
        """Write ``new`` over the stored object (the pipeline PUT and PATCH share)."""
        key = self.key(rtype, namespace, name)
        old = self.get(rtype, namespace, name)
        if not isinstance(new, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        if subresource not in (None, "status") or (subresource and not rtype.status_subresource):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if precondition and precondition != old["metadata"]["resourceVersion"]:
            raise _conflict(rtype, name)
        new = copy.deepcopy(new)
        meta = new.get("metadata")
        if not isinstance(meta, dict) or meta.get("name", name) != name:
            raise ApiError(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        if subresource == "status":
            new = {**old, "status": new.get("status")}
            if new["status"] is None:
                new.pop("status")
        else:
            if rtype.status_subresource:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            for fixed in (
                "uid",
                "creationTimestamp",
                "namespace",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "name",
            ):
                if fixed in old["metadata"]:
                    meta[fixed] = old["metadata"][fixed]
                else:
                    meta.pop(fixed, None)
            if old["metadata"].get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(
                    old["metadata"].get("finalizers") or []
                )
                if added:
                    raise invalid(
                        rtype,
                        name,
                        [
                            (
                                "metadata.finalizers",
                                "FieldValueForbidden",
                                "metadata.finalizers: Forbidden: no new finalizers can be "
                                f"added if the object is being deleted, found {sorted(added)}",
                            )
                        ],
                    )
        new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        self._admit(rtype, new)
        if new == old:
            return old  # a no-op write changes nothing, not even the resourceVersion
        if {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in old.items() if k not in ("metadata", "status")
        }:
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        new["metadata"]["resourceVersion"] = self._bump()
        self.objects[key] = new
        self._emit(rtype, "MODIFIED", new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(key)
        self.collect_garbage()
        return self._as_version(new, rtype)

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        key = self.key(rtype, namespace, name)
        obj = self.get(rtype, namespace, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            raise ApiError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {pre['uid']}, "
                f"UID in object meta: {obj['metadata']['uid']}",
            )
        if (
            pre.get("resourceVersion")
            and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]
        ):
            raise _conflict(rtype, name)
        policy = options.get("propagationPolicy") or rtype.default_propagation
        if options.get("orphanDependents") is True:
            policy = "Orphan"
        if policy not in ("Orphan", "Background", "Foreground"):
            raise invalid(
                rtype,
                name,
                [
                    (
                        "propagationPolicy",
                        "FieldValueNotSupported",
                        f'propagationPolicy: Unsupported value: "{policy}"',
                    )
                ],
            )
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if policy == "Orphan":
            self._orphan(obj["metadata"]["uid"])
        elif policy == "Foreground" and self._dependents(obj["metadata"]["uid"]):
            finalizers.append("foregroundDeletion")
        if rtype.kind == "Namespace":
            for other in [k for k in self.objects if k[2] == name]:
                self._delete_key(other)
        if finalizers:
            stored = self.objects[key]
            if stored["metadata"].get("deletionTimestamp") is None or finalizers != stored[
                "metadata"
            ].get("finalizers"):
                stored["metadata"].setdefault("deletionTimestamp", _now())
                stored["metadata"]["deletionGracePeriodSeconds"] = 0
                stored["metadata"]["finalizers"] = finalizers
                stored["metadata"]["resourceVersion"] = self._bump()
                self._emit(rtype, "MODIFIED", stored)
            self.collect_garbage()
            return self._as_version(self.objects.get(key, stored), rtype)
        removed = self._remove(key)
        self.collect_garbage()
        return self._as_version(removed, rtype)

    def _delete_key(self, key: Key) -> None:
        obj = self.objects.get(key)
        if obj is None:
            return
        rtype = self._type_for_key(key)
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                obj["metadata"]["deletionTimestamp"] = _now()
                obj["metadata"]["deletionGracePeriodSeconds"] = 0
                obj["metadata"]["resourceVersion"] = self._bump()
                self._emit(rtype, "MODIFIED", obj)
        else:
            self._remove(key)

    def _type_for_key(self, key: Key) -> ResourceType:
        obj = self.objects[key]
        version = obj["apiVersion"].split("/")[-1]
        rtype = self.types.get((key[0], version, key[1]))
        if rtype is None:  # stored under another served version
            rtype = next(t for (g, _, p), t in self.types.items() if (g, p) == key[:2])
        return rtype

    def _remove(self, key: Key) -> dict[str, Any]:
        rtype = self._type_for_key(key)
        obj = self.objects.pop(key)
        obj["metadata"]["resourceVersion"] = self._bump()
        self._emit(rtype, "DELETED", obj)
        if rtype.kind == "CustomResourceDefinition":
            self._uninstall_crd(obj)
        return obj

    def _dependents(self, uid: str) -> list[Key]:
        return [
            key
            for key, obj in self.objects.items()
            if any(o.get("uid") == uid for o in obj["metadata"].get("ownerReferences") or [])
        ]

    def _orphan(self, uid: str) -> None:
        for key in self._dependents(uid):
            obj = self.objects[key]
            obj["metadata"]["ownerReferences"] = [
                o for o in obj["metadata"]["ownerReferences"] if o.get("uid") != uid
            ] or None
            if obj["metadata"]["ownerReferences"] is None:
                del obj["metadata"]["ownerReferences"]
            obj["metadata"]["resourceVersion"] = self._bump()
            self._emit(self._type_for_key(key), "MODIFIED", obj)

    def collect_garbage(self) -> None:
        """What the garbage collector does shortly after a removal, until nothing changes:
        dependents of an object in foreground deletion go first, then it; objects whose owners
        are all gone are deleted (their own finalizers still hold them)."""
        changed = True
        while changed:
            changed = False
            live = {obj["metadata"]["uid"] for obj in self.objects.values()}
            for key, obj in list(self.objects.items()):
                if key not in self.objects:
                    continue
                meta = obj["metadata"]
                if meta.get("deletionTimestamp") and "foregroundDeletion" in (
                    meta.get("finalizers") or []
                ):
                    waiting = self._dependents(meta["uid"])
                    for dep in waiting:
                        if not self.objects[dep]["metadata"].get("deletionTimestamp"):
                            self._delete_key(dep)
                            changed = True
                    if not any(d in self.objects for d in waiting):
                        meta["finalizers"] = [
                            f for f in meta["finalizers"] if f != "foregroundDeletion"
                        ]
                        meta["resourceVersion"] = self._bump()
                        self._emit(self._type_for_key(key), "MODIFIED", obj)
                        if not meta["finalizers"]:
                            self._remove(key)
                        changed = True
                    continue
                owners = meta.get("ownerReferences") or []
                if (
                    owners
                    and not meta.get("deletionTimestamp")
                    and all(o.get("uid") not in live for o in owners)
                ):
                    self._delete_key(key)
                    changed = True


def _resource(rtype: ResourceType) -> str:
    """``plural.group`` as the API server names a resource in messages."""
    return f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural


def _conflict(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f"Operation cannot be fulfilled on {_resource(rtype)} "
        f'"{name}": the object has been modified; please apply your changes to the latest '
        "version and try again",
        {"name": name, "group": rtype.group, "kind": rtype.plural},
    )


def invalid(rtype: ResourceType, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    message = f'{rtype.kind}{"." + rtype.group if rtype.group else ""} "{name}" is invalid: '
    message += "; ".join(m for _, _, m in causes)
    return ApiError(
        422,
        "Invalid",
        message,
        {
            "name": name,
            "group": rtype.group,
            "kind": rtype.kind,
            "causes": [{"field": f, "reason": r, "message": m} for f, r, m in causes],
        },
    )
