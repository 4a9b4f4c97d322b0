"""Turn the Experiment model's JSON Schema into a Kubernetes *structural* OpenAPI v3 schema.

Part of :func:`tunery.experiment.crd_schema`, which the CRD generator (``deploy/``)
calls. Kubernetes requires CRD schemas to be structural: no ``$ref``, a ``type`` on every node
(except nodes marked ``x-kubernetes-preserve-unknown-fields`` or ``x-kubernetes-int-or-string``),
no ``anyOf``/``oneOf`` carrying types, no ``const``, no ``additionalProperties: false``, and
``properties`` never beside ``additionalProperties``. Free-form mappings (``trialSpec``,
``customCollector``, ``httpGet``, ``status``) keep unknown fields.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PRESERVE = "x-kubernetes-preserve-unknown-fields"

_KEPT = frozenset(
    {
        "type",
        "properties",
        "items",
        "additionalProperties",
        "required",
        "enum",
        "default",
        "description",
        "nullable",
        "minimum",
        "maximum",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        PRESERVE,
        "x-kubernetes-int-or-string",
    }
)


class SchemaError(ValueError):
    """The model's JSON Schema uses a construct a structural schema cannot express."""


def structural(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A structural copy of a pydantic JSON Schema: ``$ref`` inlined, nullables collapsed."""
    defs: Mapping[str, Any] = schema.get("$defs", {})
    return json.loads(json.dumps(_clean(schema, defs, ())))  # no shared parts: no YAML anchors


def _clean(
    node: Mapping[str, Any], defs: Mapping[str, Any], seen: tuple[str, ...]
) -> dict[str, Any]:
    node = dict(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            raise SchemaError(f"recursive schema at {name}; structural schemas cannot recurse")
        target = _clean(defs[name], defs, (*seen, name))
        node = {**target, **{k: v for k, v in node.items() if k in ("description", "default")}}
        return _clean_keys(node, defs, seen)
    options = node.pop("anyOf", None)
    if options is not None:
        typed = [o for o in options if o.get("type") != "null"]
        if len(typed) != 1:
            raise SchemaError(f"a union of {len(typed)} types cannot be structural: {options}")
        inner = _clean(typed[0], defs, seen)
        node = {**inner, **{k: v for k, v in node.items() if k in ("description", "default")}}
    return _clean_keys(node, defs, seen)


def _clean_keys(
    node: dict[str, Any], defs: Mapping[str, Any], seen: tuple[str, ...]
) -> dict[str, Any]:
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("default", 0) in (None, "", [], {}):
        del node["default"]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _KEPT:
            continue
        if key == "properties":
            out[key] = {name: _clean(sub, defs, seen) for name, sub in value.items()}
        elif key == "items":
            out[key] = _clean(value, defs, seen)
        elif key == "additionalProperties":
            if isinstance(value, Mapping) and value:
                out[key] = _clean(value, defs, seen)
            elif value is True or value == {}:
                out[PRESERVE] = True
            # additionalProperties: false is dropped: Kubernetes prunes unknown fields itself
        elif key == "description":
            out[key] = value.replace("``", "")  # docstrings' reST literals read badly in kubectl
        else:
            out[key] = value
    if "properties" in out:
        out.setdefault("type", "object")
        out.pop(PRESERVE, None)
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out[PRESERVE] = True
    if "type" not in out and not out.get(PRESERVE) and not out.get("x-kubernetes-int-or-string"):
        out["type"] = "object"
        out[PRESERVE] = True
    return out
