"""OpenAPI v3 documents of the fake API server: what ``kubectl apply`` reads before it writes.

Used by :mod:`fake_apiserver` for ``GET /openapi/v3`` (the index: one entry per served
group-version, ``serverRelativeURL`` carrying a hash of its document, as kube-apiserver's) and
``GET /openapi/v3/apis/<group>/<version>`` (``/openapi/v3/api/v1`` for core). Each document has,
per resource, the paths kube-apiserver publishes with their operations tagged
``x-kubernetes-group-version-kind`` and ``x-kubernetes-action``, the ``dryRun``,
``fieldManager`` and ``fieldValidation`` query parameters on writes (kubectl then leaves
validation to the server instead of downloading the v2 schema), and for a custom resource its
CRD's ``openAPIV3Schema`` under ``components.schemas`` (named as kube-apiserver names it,
``org.kubeflow.v1beta1.Experiment``). A PATCH consumes JSON merge and JSON patch only, so
kubectl's client-side apply sends a merge patch to a custom resource, as it does to a CRD's on a
real cluster. Not published: ``/openapi/v2`` (its protobuf form), built-in kinds' schemas.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from fake_storage import ResourceType

_WRITE_PARAMETERS = [
    {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for name in ("dryRun", "fieldManager", "fieldValidation")
]
_PATCH_BODY = {
    "content": {
        media: {"schema": {"type": "object"}}
        for media in ("application/json-patch+json", "application/merge-patch+json")
    },
    "required": True,
}


def group_version_path(group: str, version: str) -> str:
    """The index key of a group-version: ``apis/<group>/<version>``, or ``api/v1``."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def schema_name(rtype: ResourceType) -> str:
    """``org.kubeflow.v1beta1.Experiment`` for kubeflow.org/v1beta1 Experiment."""
    reversed_group = (
        ".".join(reversed(rtype.group.split("."))) if rtype.group else "io.k8s.api.core"
    )
    return f"{reversed_group}.{rtype.version}.{rtype.kind}"


def _operation(rtype: ResourceType, action: str, writes: bool) -> dict[str, Any]:
    gvk = {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
    operation: dict[str, Any] = {
        "operationId": f"{action}{rtype.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
        "responses": {"200": {"description": "OK"}},
    }
    if writes:
        operation["parameters"] = [dict(p) for p in _WRITE_PARAMETERS]
    if action == "patch":
        operation["requestBody"] = _PATCH_BODY
    return operation


def _paths(rtype: ResourceType) -> dict[str, Any]:
    prefix = "/" + group_version_path(rtype.group, rtype.version)
    scope = f"{prefix}/namespaces/{{namespace}}" if rtype.namespaced else prefix
    collection = f"{scope}/{rtype.plural}"
    item = f"{collection}/{{name}}"
    paths = {
        collection: {
            "get": _operation(rtype, "list", False),
            "post": _operation(rtype, "post", True),
        },
        item: {
            "get": _operation(rtype, "get", False),
            "put": _operation(rtype, "put", True),
            "patch": _operation(rtype, "patch", True),
            "delete": _operation(rtype, "delete", True),
        },
    }
    if rtype.status_subresource:
        paths[f"{item}/status"] = {
            "get": _operation(rtype, "get", False),
            "put": _operation(rtype, "put", True),
            "patch": _operation(rtype, "patch", True),
        }
    return paths


def document(types: Iterable[ResourceType]) -> dict[str, Any]:
    """The OpenAPI v3 document of one group-version's resource ``types``."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rtype in types:
        paths.update(_paths(rtype))
        if rtype.schema is not None:
            gvk = {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
            schemas[schema_name(rtype)] = {
                **rtype.schema,
                "x-kubernetes-group-version-kind": [gvk],
            }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0-tunery-fake"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def by_group_version(
    types: Iterable[ResourceType],
) -> dict[str, dict[str, Any]]:
    """Every served group-version's document, keyed by :func:`group_version_path`."""
    grouped: dict[str, list[ResourceType]] = {}
    for rtype in types:
        grouped.setdefault(group_version_path(rtype.group, rtype.version), []).append(rtype)
    return {path: document(members) for path, members in sorted(grouped.items())}


def index(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``/openapi/v3``: each group-version's URL with the hash of its document."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={_hash(doc)}"}
            for path, doc in documents.items()
        }
    }


def _hash(doc: dict[str, Any]) -> str:
    text = json.dumps(doc, sort_keys=True, default=str).encode()
    return hashlib.sha512(text).hexdigest()[:64].upper()
