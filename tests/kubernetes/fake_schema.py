"""CRD structural schemas as kube-apiserver applies them: prune, default, validate.

Used by :mod:`fake_apiserver` on every write of a custom resource (create, update, patch, the
status subresource), in the order the API server uses: unknown fields are pruned (unless
``x-kubernetes-preserve-unknown-fields``), ``default`` values are filled in, then the object is
validated against the ``openAPIV3Schema``. Errors carry the field path the way the API server
words them (``spec.parallelTrialCount: Invalid value: "two": ... must be of type integer``).

Covered keywords: type, nullable, properties, additionalProperties, items, required, enum,
minimum/maximum (and exclusive), minLength/maxLength, pattern, minItems/maxItems,
anyOf/oneOf/allOf/not, x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields,
x-kubernetes-embedded-resource. ``metadata`` at the root is left to the server's own checks.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class FieldError:
    """One invalid field: the path (``spec.parameters[0].name``), the kind, the message."""

    field: str
    reason: (
        str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueTypeInvalid
    )
    message: str


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, default=str)


def prune(obj: Any, schema: Schema, *, root: bool = False) -> Any:
    """``obj`` without the fields ``schema`` does not know (in place for mappings/lists)."""
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        for key in list(obj):
            if root and key in ("apiVersion", "kind", "metadata"):
                continue
            if props is not None and key in props:
                prune(obj[key], props[key])
            elif isinstance(extra, Mapping):
                prune(obj[key], extra)
            elif extra is True or preserve:
                continue
            else:
                del obj[key]
    elif isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
        for item in obj:
            prune(item, schema["items"])
    return obj


def apply_defaults(obj: Any, schema: Schema) -> Any:
    """Fill in ``default`` for absent properties, recursively (in place)."""
    if isinstance(obj, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                apply_defaults(obj[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key, value in obj.items():
                if key not in (schema.get("properties") or {}):
                    apply_defaults(value, extra)
    elif isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
        for item in obj:
            apply_defaults(item, schema["items"])
    return obj


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def validate(obj: Any, schema: Schema, path: str = "") -> list[FieldError]:
    """Every violation of ``schema`` by ``obj`` (empty when valid)."""
    errors: list[FieldError] = []
    _check(obj, schema, path, errors, root=not path)
    return errors


def _check(value: Any, schema: Schema, path: str, errors: list[FieldError], root: bool) -> None:
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            errors.append(
                FieldError(
                    path,
                    "FieldValueTypeInvalid",
                    f'{path}: Invalid value: "null": {path or "body"} in body '
                    f'must be of type {schema["type"]}: "null"',
                )
            )
        return
    before = len(errors)
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (_TYPES["integer"](value) or _TYPES["string"](value)):
            errors.append(_invalid(path, value, "must be an integer or a string"))
            return
    elif kind and not _TYPES.get(kind, lambda v: True)(value):
        errors.append(
            FieldError(
                path,
                "FieldValueTypeInvalid",
                f'{path}: Invalid value: "{_type_name(value)}": '
                f"{path or 'body'} in body must be of type {kind}: "
                f'"{_type_name(value)}"',
            )
        )
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(_shown(v) for v in schema["enum"])
        errors.append(
            FieldError(
                path,
                "FieldValueNotSupported",
                f"{path}: Unsupported value: {_shown(value)}: supported values: {allowed}",
            )
        )
    if _TYPES["number"](value):
        _check_number(value, schema, path, errors)
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(
                _invalid(path, value, f"should be at least {schema['minLength']} chars long")
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(
                FieldError(
                    path,
                    "FieldValueTooLong",
                    f"{path}: Too long: may not be longer than {schema['maxLength']}",
                )
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(_invalid(path, value, f"should match '{schema['pattern']}'"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(
                _invalid(path, value, f"should have at least {schema['minItems']} items")
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(
                FieldError(
                    path,
                    "FieldValueTooMany",
                    f"{path}: Too many: {len(value)}: must have at most "
                    f"{schema['maxItems']} items",
                )
            )
        if isinstance(schema.get("items"), Mapping):
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{path}[{i}]", errors, root=False)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key in schema.get("required") or []:
            if key not in value:
                where = _join(path, key)
                errors.append(FieldError(where, "FieldValueRequired", f"{where}: Required value"))
        for key, item in value.items():
            if root and key == "metadata":
                continue
            if key in props:
                _check(item, props[key], _join(path, key), errors, root=False)
            elif isinstance(schema.get("additionalProperties"), Mapping):
                _check(item, schema["additionalProperties"], _join(path, key), errors, root=False)
    if len(errors) > before:
        return
    for sub in schema.get("allOf") or []:
        _check(value, sub, path, errors, root)
    if schema.get("anyOf") and not any(not validate(value, s, path) for s in schema["anyOf"]):
        errors.append(_invalid(path, value, "must validate at least one schema (anyOf)"))
    if schema.get("oneOf"):
        matches = sum(1 for s in schema["oneOf"] if not validate(value, s, path))
        if matches != 1:
            errors.append(_invalid(path, value, "must validate one and only one schema (oneOf)"))
    if isinstance(schema.get("not"), Mapping) and not validate(value, schema["not"], path):
        errors.append(_invalid(path, value, "must not validate the schema (not)"))


def _check_number(value: float, schema: Schema, path: str, errors: list[FieldError]) -> None:
    if "minimum" in schema:
        low = schema["minimum"]
        if value < low or (schema.get("exclusiveMinimum") is True and value == low):
            op = (
                "greater than"
                if schema.get("exclusiveMinimum") is True
                else "greater than or equal to"
            )
            errors.append(_invalid(path, value, f"should be {op} {low}"))
    if "maximum" in schema:
        high = schema["maximum"]
        if value > high or (schema.get("exclusiveMaximum") is True and value == high):
            op = "less than" if schema.get("exclusiveMaximum") is True else "less than or equal to"
            errors.append(_invalid(path, value, f"should be {op} {high}"))


def _invalid(path: str, value: Any, why: str) -> FieldError:
    return FieldError(
        path, "FieldValueInvalid", f"{path}: Invalid value: {_shown(value)}: {path} in body {why}"
    )


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def admit(obj: dict[str, Any], schema: Schema) -> list[FieldError]:
    """Prune, default and validate ``obj`` (in place) as the API server does on a write."""
    prune(obj, schema, root=True)
    apply_defaults(obj, schema)
    return validate(obj, schema)
