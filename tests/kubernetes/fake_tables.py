"""Server-side printing for the fake API server: ``kubectl get`` asks for a ``Table``.

Called by :mod:`fake_apiserver` when a GET's ``Accept`` names ``as=Table``. Columns are
``Name``, then a CRD version's ``additionalPrinterColumns`` (their ``jsonPath`` evaluated as
the API server does for the simple forms CRDs use: ``.a.b``, ``[i]``, ``[a:b]``, ``[*]``), or
``Age`` for a kind without any; ``date`` cells are shown as an age (``5s``, ``3m``, ``2h``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(-?\d*)(?::(-?\d*))?\]|\[\*\]")


def evaluate(path: str, obj: Any) -> list[Any]:
    """The values ``path`` selects in ``obj`` (empty when absent)."""
    values = [obj]
    for match in _SEGMENT.finditer(path):
        key, start, stop = match.groups()
        found: list[Any] = []
        for value in values:
            if key is not None:
                if isinstance(value, Mapping) and key in value:
                    found.append(value[key])
            elif isinstance(value, list):
                if match.group(0) == "[*]":
                    found.extend(value)
                elif ":" in match.group(0):
                    found.extend(
                        value[int(start) if start else None : int(stop) if stop else None]
                    )
                elif start and -len(value) <= int(start) < len(value):
                    found.append(value[int(start)])
        values = found
    return values


def age(timestamp: str, now: dt.datetime | None = None) -> str:
    """``2026-01-01T00:00:00Z`` as kubectl shows an age."""
    try:
        then = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except (TypeError, ValueError):
        return "<unknown>"
    seconds = int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _cell(column: Mapping[str, Any], obj: Mapping[str, Any]) -> Any:
    values = evaluate(str(column.get("jsonPath", "")), obj)
    if not values:
        return None
    if column.get("type") == "date":
        return age(str(values[0]))
    if len(values) == 1:
        return values[0] if not isinstance(values[0], (dict, list)) else str(values[0])
    return ",".join(str(v) for v in values)


AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def table(
    objects: Sequence[Mapping[str, Any]],
    columns: Sequence[Mapping[str, Any]],
    resource_version: str,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects`` (rows carry PartialObjectMetadata)."""
    columns = list(columns) or [AGE]
    definitions = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
    ]
    definitions += [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]
    rows = [
        {
            "cells": [obj["metadata"]["name"], *(_cell(c, obj) for c in columns)],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            },
        }
        for obj in objects
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
