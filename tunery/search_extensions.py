"""Wire form of tunery's search extensions in fields a Katib client or server ignores.

Kernel module (imports only ``tunery.space``). Conditional parameters and constraints are not
in Katib's api.v1.beta1 messages, so the controller (``controller.protos``) appends them to the
experiment's ``algorithm.algorithmSettings`` under reserved names, and the suggestion service
(``suggestion.convert``) takes them out again before the algorithm's own settings are parsed:

- ``tunery.conditions``: JSON object ``{"child": {"parameter": "parent", "values": [..]}}``,
  values as wire strings of the parent (``"sgd"``, ``"0.1"``);
- ``tunery.constraints``: JSON list of metric names (each also an additional metric, so
  Katib's controller collects it and sends it in every trial's observation).

They are sent only when the experiment uses an extension, so a plain Katib experiment's
messages are byte-for-byte what Katib's controller sends.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence

from tunery.space import Condition, Parameter, SearchSpace, SpaceError

CONDITIONS_SETTING = "tunery.conditions"
CONSTRAINTS_SETTING = "tunery.constraints"
RESERVED_SETTINGS = (CONDITIONS_SETTING, CONSTRAINTS_SETTING)


def encode_conditions(conditions: Mapping[str, tuple[str, Sequence[str]]]) -> str:
    """``{child: (parent, wire values)}`` as the ``tunery.conditions`` setting value."""
    return json.dumps(
        {
            child: {"parameter": parent, "values": list(values)}
            for child, (parent, values) in conditions.items()
        },
        sort_keys=True,
    )


def apply_conditions(parameters: Sequence[Parameter], text: str) -> SearchSpace:
    """The space of ``parameters`` with the conditions of a ``tunery.conditions`` value.

    Raises:
        SpaceError: malformed JSON, an unknown child or parent, a value its parent does not
            have, or a cycle (the message names which).
    """
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise SpaceError(f"{CONDITIONS_SETTING} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{CONDITIONS_SETTING} must be a JSON object child -> condition")
    by_name = {p.name: p for p in parameters}
    out = dict(by_name)
    for child, cond in raw.items():
        if child not in by_name:
            raise SpaceError(f"{CONDITIONS_SETTING}: {child!r} is not a parameter")
        if (
            not isinstance(cond, dict)
            or not isinstance(cond.get("parameter"), str)
            or not isinstance(cond.get("values"), list)
            or not all(isinstance(v, str) for v in cond["values"])
        ):
            raise SpaceError(
                f'{CONDITIONS_SETTING}: {child}: write {{"parameter": name, "values": [strings]}}'
            )
        parent = by_name.get(cond["parameter"])
        if parent is None:
            raise SpaceError(
                f"{CONDITIONS_SETTING}: {child}: {cond['parameter']!r} is not a parameter"
            )
        values = tuple(parent.parse(v) for v in cond["values"])
        out[child] = dataclasses.replace(by_name[child], condition=Condition(parent.name, values))
    return SearchSpace(tuple(out[p.name] for p in parameters))


def encode_constraints(names: Sequence[str]) -> str:
    return json.dumps(list(names))


def decode_constraints(text: str) -> tuple[str, ...]:
    """Metric names of a ``tunery.constraints`` value.

    Raises:
        ValueError: not a JSON list of non-empty strings.
    """
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{CONSTRAINTS_SETTING} is not valid JSON: {exc}") from None
    if not isinstance(raw, list) or not all(isinstance(n, str) and n for n in raw):
        raise ValueError(f"{CONSTRAINTS_SETTING} must be a JSON list of metric names")
    return tuple(raw)
