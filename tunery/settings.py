"""Katib's algorithm settings (name/value strings) parsed into a typed, frozen dataclass.

Called by ``suggestion.algorithms.base.parse_settings`` and ``earlystop.base.parse_settings``,
each passing its own package's ``InvalidSettingsError``; the settings dataclasses of the
algorithms and early stoppers declare the types and defaults, and check ranges in their
``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def parse_settings(
    settings_type: type[T],
    raw: Mapping[str, str] | Iterable[tuple[str, str]],
    algorithm: str,
    error: type[Exception],
) -> T:
    """``settings_type`` built from Katib's name/value strings; absent names keep defaults.

    Raises:
        error: an unknown name ("unknown setting X for algorithm Y", Katib's message), a name
            given twice, or a value that does not parse ("failed to validate X(V): reason").
        Whatever the settings type's ``__post_init__`` raises for a value it rejects.
    """
    pairs = list(raw.items()) if isinstance(raw, Mapping) else list(raw)
    hints = typing.get_type_hints(settings_type)
    fields = {f.name for f in dataclasses.fields(settings_type)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for name, value in pairs:
        if name not in fields:
            raise error(f"unknown setting {name} for algorithm {algorithm}")
        if name in kwargs:
            raise error(f"setting {name} is given more than once")
        try:
            kwargs[name] = convert(value, hints[name])
        except ValueError as exc:
            raise error(f"failed to validate {name}({value}): {exc}") from None
    return settings_type(**kwargs)


def convert(raw: str, annotation: Any) -> Any:
    """One raw setting string as the field's type: int, float (not NaN), bool, str, a
    ``Literal`` of strings, or an optional one of these (``none``/``null``/empty is None).

    Raises:
        ValueError: the string is not a value of that type.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        non_none = [a for a in args if a is not type(None)]
        if raw.strip().lower() in ("none", "null", "") and len(non_none) != len(args):
            return None
        return convert(raw, non_none[0])
    if origin is typing.Literal:
        if raw not in args:
            raise ValueError(f"must be one of {', '.join(map(str, args))}")
        return raw
    if annotation is bool:
        low = raw.strip().lower()
        if low not in ("true", "false", "1", "0"):
            raise ValueError("must be true or false")
        return low in ("true", "1")
    if annotation is int:
        try:
            return int(raw)
        except ValueError:
            pass
        try:
            number = float(raw)
        except ValueError:
            raise ValueError("must be an integer") from None
        if not number.is_integer():
            raise ValueError("must be an integer")
        return int(number)
    if annotation is float:
        number = float(raw)
        if math.isnan(number):
            raise ValueError("must be a number, not NaN")
        return number
    return raw
