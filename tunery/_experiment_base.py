"""Shared building blocks of the Experiment model: the base model and the field types.

Private helper of :mod:`tunery.experiment` and its ``_experiment_*`` siblings. ``Node`` gives
every model camelCase aliases, rejects unknown fields and freezes instances; the annotated
field types read Katib's YAML conventions (values as strings, free-form Kubernetes objects)
and report problems with tunery's messages rather than pydantic's.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.alias_generators import to_camel

from tunery._experiment_errors import custom_error, did_you_mean, show


def choice(
    enum_cls: type[enum.StrEnum],
    what: str,
    *,
    empty: enum.StrEnum | None = None,
    optional: bool = False,
    hints: Mapping[str, str] | None = None,
) -> BeforeValidator:
    """A validator accepting an enum's values, with a message listing them (and a hint).

    ``null`` and ``""`` become ``empty`` when it is given (Katib's defaulting), or None when
    ``optional`` (annotate the field ``Annotated[E | None, choice(...)]`` then).
    """
    values = [m.value for m in enum_cls]

    def check(value: object) -> object:
        if isinstance(value, enum_cls):
            return value
        if value is None or value == "":
            if empty is not None:
                return empty
            if optional:
                return None
        hint = ""
        if isinstance(value, str):
            if value in values:
                return enum_cls(value)
            if hints and value in hints:
                raise custom_error(f"{show(value)} {hints[value]}")
            hint = did_you_mean(value, values)
        raise custom_error(
            f"{show(value)} is not a valid {what}; use one of: {', '.join(values)}{hint}"
        )

    return BeforeValidator(check)


def _text(value: object) -> object:
    """Katib keeps feasible-space values and settings as strings; accept YAML numbers too."""
    if isinstance(value, bool):
        raise custom_error(
            f"{show(value)} is not a string (YAML reads unquoted true/false/yes/no as booleans: "
            "quote the value)"
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return value


def _goal(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise custom_error(f"{show(value)} is not a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise custom_error(f"{show(value)} is not a number") from None
    if not math.isfinite(number):
        raise custom_error(f"{show(value)} is not a finite number")
    return number


def plain(value: Any) -> Any:
    """A deep copy of YAML/JSON-like data with string keys and dates as ISO strings."""
    if isinstance(value, Mapping):
        return {_plain_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dt.date):  # YAML timestamps; Kubernetes reads them as strings
        return value.isoformat()
    return value


def _plain_key(key: object) -> object:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return str(key)
    return key


def _free_form(value: object) -> object:
    if not isinstance(value, Mapping):
        raise custom_error(f"{show(value)} is not a mapping")
    return plain(value)


Text = Annotated[str, BeforeValidator(_text)]
Goal = Annotated[float, BeforeValidator(_goal)]
FreeForm = Annotated[dict[str, Any], BeforeValidator(_free_form)]
"""A free-form Kubernetes object: any fields, kept as given (plain JSON-like data)."""


class Node(BaseModel):
    """Base of every model: camelCase aliases, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        hide_input_in_errors=True,
    )

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None and v != [] and v != ()}
        return data
