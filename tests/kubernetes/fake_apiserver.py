"""An honest fake kube-apiserver: an aiohttp app with the semantics clients depend on.

The HTTP face of :class:`fake_storage.Storage` (which holds the semantics of writes).
Served by :mod:`fake_cluster` (in a thread for tests, or as its own process for development);
the end-to-end tests run ``tunery operator`` (kopf, real watches) and the ``kubernetes`` client
against it. What it does as kube-apiserver does:

- discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>[/<version>]`` for
  core, batch, coordination.k8s.io, apiextensions.k8s.io and every installed CRD version;
- create answers 201 with server-set ``uid``, ``resourceVersion``, ``creationTimestamp``,
  ``generation``; a taken name is 409 AlreadyExists; a missing namespace 404; ``generateName``;
- update (PUT) requires the current ``metadata.resourceVersion`` (409 Conflict otherwise, 422
  when absent); patches: JSON merge patch, JSON patch (a failed ``test`` op is 422 Invalid),
  strategic merge for built-in kinds (as a merge patch), 415 for custom resources; a patch that
  carries ``metadata.resourceVersion`` is a precondition; a no-op write changes nothing;
- the status subresource: writes to the object ignore ``status``, writes to ``/status``
  change only ``status``; ``generation`` grows when anything but status/metadata changes;
- custom resources are pruned, defaulted and validated against their CRD's openAPIV3Schema
  (:mod:`fake_schema`), built-in kinds against the Kubernetes OpenAPI (kubernetes-validate);
  errors are 422 with ``details.causes`` naming each field;
- delete: with finalizers it sets ``deletionTimestamp`` and waits until the last finalizer is
  released (no new finalizers may be added meanwhile), then removes the object; DeleteOptions
  preconditions (uid, resourceVersion); propagation Orphan, Background, Foreground;
- garbage collection after every removal, whatever removed it (a DELETE or a finalizer
  release): objects all of whose ``ownerReferences`` are gone are deleted, transitively;
- OpenAPI v3 (``/openapi/v3`` and one document per group-version, :mod:`fake_openapi`), so
  ``kubectl apply``/``create`` validate through the server and patch custom resources with a
  merge patch;
- ``kubectl get`` columns: a ``Table`` (``Accept: ...;as=Table``) with the CRD's
  additionalPrinterColumns (:mod:`fake_tables`);
- list and watch with ``labelSelector`` and ``fieldSelector`` (metadata.name/namespace);
  watches start from a ``resourceVersion`` (replaying the history after it, 410 Expired when it
  is too old), or with the current objects as ADDED when it is absent or "0"; BOOKMARK events
  when ``allowWatchBookmarks``; ``timeoutSeconds``.

Not emulated: authentication/authorization (every request is allowed), server-side apply, the
controllers that run pods (tests play kubelet and the Job controller), field managers.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import fake_openapi
import fake_tables
import jsonpatch
from aiohttp import web
from fake_storage import (
    ApiError,
    ResourceType,
    Storage,
    Watcher,
    field_matches,
    invalid,
    merge_patch,
    selector_matches,
)

BOOKMARK_SECONDS = 1.0


# -- the HTTP face -------------------------------------------------------------------------------


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, default=str))


def build_app(storage: Storage | None = None, *, log_refusals: bool = False) -> web.Application:
    """The aiohttp application serving ``storage`` (a fresh one by default); with
    ``log_refusals`` every refused request is printed to stderr with its status."""
    storage = storage or Storage()
    app = web.Application(middlewares=[_errors])
    app["storage"] = storage
    app["log_refusals"] = log_refusals
    app.router.add_get("/version", _version)
    app.router.add_get("/healthz", _ok)
    app.router.add_get("/readyz", _ok)
    app.router.add_get("/api", _core_versions)
    app.router.add_get("/apis", _groups)
    app.router.add_get("/openapi/v3", _openapi_index)
    app.router.add_get("/openapi/v3/{path:.+}", _openapi_document)
    app.router.add_route("*", "/api/{version}{rest:.*}", _core)
    app.router.add_route("*", "/apis/{group}{rest:.*}", _grouped)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except ApiError as exc:
        if request.app["log_refusals"]:  # what a client got refused, for whoever debugs it
            print(
                f"{request.method} {request.path_qs} -> {exc.code} {exc.reason}: {exc.message}",
                file=sys.stderr,
                flush=True,
            )
        return _json(exc.status(), exc.code)


async def _ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _version(_request: web.Request) -> web.Response:
    return _json(
        {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.0-tunery-fake",
            "platform": "linux/amd64",
        }
    )


async def _core_versions(_request: web.Request) -> web.Response:
    return _json(
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        }
    )


async def _openapi_index(request: web.Request) -> web.Response:
    storage: Storage = request.app["storage"]
    return _json(fake_openapi.index(fake_openapi.by_group_version(storage.types.values())))


async def _openapi_document(request: web.Request) -> web.Response:
    storage: Storage = request.app["storage"]
    documents = fake_openapi.by_group_version(storage.types.values())
    found = documents.get(request.match_info["path"])
    if found is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return _json(found)


def _group_document(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


async def _groups(request: web.Request) -> web.Response:
    groups = request.app["storage"].groups()
    return _json(
        {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [_group_document(g, v) for g, v in sorted(groups.items()) if g],
        }
    )


def _resource_list(storage: Storage, group: str, version: str) -> dict[str, Any]:
    types = [t for (g, v, _), t in storage.types.items() if (g, v) == (group, version)]
    if not types:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [r for t in types for r in t.discovery()],
    }


async def _core(request: web.Request) -> web.StreamResponse:
    version = request.match_info["version"]
    return await _dispatch(request, "", version, request.match_info["rest"])


async def _grouped(request: web.Request) -> web.StreamResponse:
    group = request.match_info["group"]
    parts = [p for p in request.match_info["rest"].split("/") if p]
    storage: Storage = request.app["storage"]
    if not parts:
        versions = storage.groups().get(group)
        if not versions:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return _json({"kind": "APIGroup", "apiVersion": "v1", **_group_document(group, versions)})
    return await _dispatch(request, group, parts[0], "/" + "/".join(parts[1:]))


async def _dispatch(
    request: web.Request, group: str, version: str, rest: str
) -> web.StreamResponse:
    storage: Storage = request.app["storage"]
    parts = [p for p in rest.split("/") if p]
    if not parts:
        if request.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        return _json(_resource_list(storage, group, version))
    namespace = None
    if parts[0] == "namespaces" and len(parts) >= 3 and parts[2] not in ("status", "finalize"):
        namespace, parts = parts[1], parts[2:]
    rtype = storage.type_of(group, version, parts[0])
    if rtype.namespaced is False and namespace is not None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    name = parts[1] if len(parts) > 1 else None
    subresource = parts[2] if len(parts) > 2 else None
    if len(parts) > 3 or (subresource and subresource != "status"):
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    method = request.method
    if name is None:
        if method == "GET":
            if request.query.get("watch") in ("true", "1"):
                return await _watch(request, storage, rtype, namespace)
            listing = _list(request, storage, rtype, namespace)
            if _wants_table(request):
                return _json(
                    fake_tables.table(
                        listing["items"],
                        rtype.printer_columns,
                        listing["metadata"]["resourceVersion"],
                    )
                )
            return _json(listing)
        if method == "POST":
            if rtype.namespaced and namespace is None:
                raise ApiError(405, "MethodNotAllowed", "create needs a namespace in the URL")
            body = await _body(request)
            dry = request.query.get("dryRun") == "All"
            return _json(storage.create(rtype, namespace, body, dry_run=dry), 201)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
    if rtype.namespaced and namespace is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    if method == "GET":
        obj = storage.get(rtype, namespace, name)
        if subresource == "status" and not rtype.status_subresource:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if _wants_table(request):
            version = obj["metadata"]["resourceVersion"]
            return _json(fake_tables.table([obj], rtype.printer_columns, version))
        return _json(obj)
    if method == "PUT":
        body = await _body(request)
        given = (
            ((body or {}).get("metadata") or {}).get("resourceVersion")
            if isinstance(body, dict)
            else None
        )
        if not given:
            raise invalid(
                rtype,
                name,
                [
                    (
                        "metadata.resourceVersion",
                        "FieldValueInvalid",
                        "metadata.resourceVersion: Invalid value: 0x0: "
                        "must be specified for an update",
                    )
                ],
            )
        return _json(
            storage.update(
                rtype, namespace, name, body, subresource=subresource, precondition=given
            )
        )
    if method == "PATCH":
        return _json(
            _patch(
                storage,
                rtype,
                namespace,
                name,
                subresource,
                request.content_type,
                await _body(request),
            )
        )
    if method == "DELETE":
        if subresource:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        options = await _body(request, optional=True) or {}
        for key in ("propagationPolicy", "gracePeriodSeconds"):
            if key in request.query:
                options[key] = request.query[key]
        return _json(storage.delete(rtype, namespace, name, options))
    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")


def _wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


async def _body(request: web.Request, *, optional: bool = False) -> Any:
    text = await request.text()
    if not text.strip():
        if optional:
            return None
        raise ApiError(400, "BadRequest", "the request has no body")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ApiError(
            400, "BadRequest", f"the body of the request cannot be decoded: {exc}"
        ) from None


def _patch(
    storage: Storage,
    rtype: ResourceType,
    namespace: str | None,
    name: str,
    subresource: str | None,
    content_type: str,
    patch: Any,
) -> dict[str, Any]:
    current = storage.get(rtype, namespace, name)
    if content_type == "application/json-patch+json":
        if not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
        try:
            new = jsonpatch.JsonPatch(patch).apply(current)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise ApiError(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
                {"causes": [{"reason": "FieldValueInvalid", "message": str(exc)}]},
            ) from None
        precondition = None
    elif content_type in (
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ):
        if content_type.startswith("application/strategic") and not rtype.builtin:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml",
            )
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        precondition = (patch.get("metadata") or {}).get("resourceVersion")
        new = merge_patch(current, patch)
    else:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the fake API server does not accept {content_type!r} patches",
        )
    return storage.update(
        rtype, namespace, name, new, subresource=subresource, precondition=precondition
    )


def _list(
    request: web.Request, storage: Storage, rtype: ResourceType, namespace: str | None
) -> dict[str, Any]:
    labels = request.query.get("labelSelector", "")
    fields = request.query.get("fieldSelector", "")
    items = [
        obj
        for obj in storage.list(rtype, namespace)
        if (not labels or selector_matches(labels, obj["metadata"].get("labels") or {}))
        and (not fields or field_matches(fields, obj))
    ]
    return {
        "kind": f"{rtype.kind}List",
        "apiVersion": rtype.api_version,
        "metadata": {"resourceVersion": str(storage.revision)},
        "items": items,
    }


async def _watch(
    request: web.Request, storage: Storage, rtype: ResourceType, namespace: str | None
) -> web.StreamResponse:
    labels = request.query.get("labelSelector", "")
    fields = request.query.get("fieldSelector", "")
    bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
    timeout = float(request.query.get("timeoutSeconds") or 1800)
    since = request.query.get("resourceVersion", "")

    def wanted(obj: Mapping[str, Any]) -> bool:
        return (not labels or selector_matches(labels, obj["metadata"].get("labels") or {})) and (
            not fields or field_matches(fields, obj)
        )

    watcher = Watcher(rtype, namespace)
    if since in ("", "0"):
        first = [{"type": "ADDED", "object": obj} for obj in storage.list(rtype, namespace)]
    else:
        try:
            first = storage.replay(rtype, namespace, int(since))
        except ValueError:
            raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}") from None
        except ApiError as exc:  # the API server says so in the stream, then ends it
            first, timeout = [{"type": "ERROR", "object": exc.status()}], 0.0
    storage.watchers.append(watcher)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        async for event in _events(first, watcher, storage, timeout, bookmarks):
            if event["type"] in ("BOOKMARK", "ERROR") or wanted(event["object"]):
                event = copy.deepcopy(event)
                if event["type"] != "ERROR":
                    event["object"]["apiVersion"] = rtype.api_version
                await response.write((json.dumps(event) + "\n").encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        storage.watchers.remove(watcher)
    return response


async def _events(
    first: list[dict[str, Any]],
    watcher: Watcher,
    storage: Storage,
    timeout: float,
    bookmarks: bool,
) -> AsyncIterator[dict[str, Any]]:
    for event in first:
        yield event
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            yield await asyncio.wait_for(watcher.queue.get(), min(left, BOOKMARK_SECONDS))
        except TimeoutError:
            if bookmarks:
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "kind": watcher.rtype.kind,
                        "apiVersion": watcher.rtype.api_version,
                        "metadata": {"resourceVersion": str(storage.revision)},
                    },
                }
