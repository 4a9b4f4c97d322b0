"""Error values of ``tunery.experiment`` and the translation of pydantic errors into them.

Part of :mod:`tunery.experiment` (which re-exports :class:`FieldError` and
:class:`ExperimentError`). Every problem a user sees is a :class:`FieldError`: a field path in
Katib's camelCase (``spec.parameters[1].feasibleSpace.min``) and a plain-English message that
quotes the bad value. Validators report problems through :class:`Problems`, which raises them as
pydantic line errors of type ``tunery`` so pydantic collects them together with its own type
errors; :func:`translate` turns the collected pydantic errors into :class:`FieldError` values.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc = tuple[str | int, ...]

ERROR_TYPE = "tunery"
"""pydantic error type of every problem raised by tunery's own validators."""

_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class FieldError:
    """One problem in an Experiment document: where (``path``) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ExperimentError(ValueError):
    """An Experiment document is invalid. ``errors`` holds every problem found, in order.

    ``str(err)`` lists the problems one per line, e.g.
    ``spec.parameters[1].feasibleSpace.min: "abc" is not a number``.
    """

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errors,))


def show(value: object, limit: int = 80) -> str:
    """A short, YAML/JSON-like rendering of a user's value for messages."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value) if math.isfinite(value) else str(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_path(loc: Iterable[str | int]) -> str:
    """``("spec", "parameters", 1, "name")`` -> ``spec.parameters[1].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _SIMPLE_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``'; did you mean "x"?'`` for the closest choice, or ``""``."""
    options = [c for c in choices if c != word]
    folded = {_fold(c): c for c in options}
    key = _fold(word)
    if key in folded:
        return f'; did you mean "{folded[key]}"?'
    close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.7)
    if close:
        return f'; did you mean "{folded[close[0]]}"?'
    containing = [c for f, c in folded.items() if len(key) >= 4 and key in f]
    return f'; did you mean "{containing[0]}"?' if len(containing) == 1 else ""


def _fold(word: str) -> str:
    return word.replace("_", "").replace("-", "").lower()


def custom_error(message: str) -> PydanticCustomError:
    return PydanticCustomError(ERROR_TYPE, "{message}", {"message": message})


class Problems:
    """Collects problems found by one validator, each at a location relative to the node."""

    def __init__(self) -> None:
        self.items: list[tuple[Loc, str]] = []

    def add(self, message: str, *loc: str | int) -> None:
        self.items.append((tuple(loc), message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, title: str) -> None:
        """Raise every collected problem as one pydantic ValidationError (merged by pydantic
        into the enclosing model's errors, with the node's location prepended)."""
        if self.items:
            raise ValidationError.from_exception_data(
                title,
                [
                    InitErrorDetails(type=custom_error(message), loc=loc, input=None)
                    for loc, message in self.items
                ],
            )


def reraise_with(exc: ValidationError, extra: Problems) -> ValidationError:
    """A ValidationError holding the line errors of ``exc`` followed by ``extra``'s."""
    details: list[InitErrorDetails] = []
    for err in exc.errors():
        details.append(_as_details(err))
    for loc, message in extra.items:
        details.append(InitErrorDetails(type=custom_error(message), loc=loc, input=None))
    return ValidationError.from_exception_data(exc.title, details)


def _as_details(err: Any) -> InitErrorDetails:
    if err["type"] == ERROR_TYPE:
        return InitErrorDetails(
            type=custom_error(err["ctx"]["message"]), loc=err["loc"], input=err.get("input")
        )
    details = InitErrorDetails(type=err["type"], loc=err["loc"], input=err.get("input"))
    if "ctx" in err:
        details["ctx"] = err["ctx"]
    try:  # a known pydantic-core error type: keep it as it is
        ValidationError.from_exception_data("probe", [details])
    except (TypeError, KeyError, ValueError):
        return InitErrorDetails(type=custom_error(err["msg"]), loc=err["loc"], input=None)
    return details


# -- translation ----------------------------------------------------------------------------


def translate(
    exc: ValidationError, root: type[BaseModel], document: object = None
) -> list[FieldError]:
    """Every line error of ``exc`` (raised validating ``root``) as a FieldError, deduplicated,
    in the order the fields appear in ``document`` (the validated input), when given."""
    ranked: list[tuple[tuple[int, ...], FieldError]] = []
    seen: set[FieldError] = set()
    for err in exc.errors():
        for field_error in _translate_one(err, root):
            if field_error not in seen:
                seen.add(field_error)
                ranked.append((_document_order(document, tuple(err["loc"])), field_error))
    ranked.sort(key=lambda item: item[0])  # stable: same place keeps pydantic's order
    return [field_error for _, field_error in ranked]


def _document_order(document: object, loc: Loc) -> tuple[int, ...]:
    """Sort key placing ``loc`` where it occurs in ``document`` (absent keys after present)."""
    key: list[int] = []
    node = document
    for part in loc:
        if isinstance(node, Mapping):
            keys = list(node)
            if part in node:
                key.append(keys.index(part))
                node = node[part]
                continue
            key.append(len(keys))
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            key.append(part)
            node = node[part]
            continue
        break
    return tuple(key)


def _translate_one(err: Any, root: type[BaseModel]) -> list[FieldError]:
    loc: Loc = tuple(err["loc"])
    kind: str = err["type"]
    value = err.get("input")
    if kind == ERROR_TYPE:
        return [FieldError(format_path(loc), err["ctx"]["message"])]
    if loc and loc[-1] == "[key]":
        return [FieldError(format_path(loc[:-2]), f"key {show(loc[-2])} is not a string")]
    path = format_path(loc)
    if kind == "missing":
        return [FieldError(path, "is required")]
    if kind == "extra_forbidden":
        return [FieldError(path, _unknown_field_message(root, loc))]
    message = _TYPE_MESSAGES.get(kind)
    if message is not None and value is None and loc and isinstance(loc[-1], str):
        return [FieldError(path, "is required")]  # an explicit null where a value is needed
    if message is not None:
        text = f"{show(value)} {message}"
        if isinstance(value, bool) and kind == "string_type":
            text += " (YAML reads unquoted true/false/yes/no as booleans: quote the value)"
        return [FieldError(path, text)]
    if kind in ("enum", "literal_error"):
        return [FieldError(path, f"{show(value)} is not one of: {err['ctx']['expected']}")]
    msg = str(err.get("msg", "is invalid"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return [FieldError(path, msg[:1].lower() + msg[1:])]


_TYPE_MESSAGES = {
    "string_type": "is not a string",
    "int_type": "is not an integer",
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "float_type": "is not a number",
    "float_parsing": "is not a number",
    "finite_number": "is not a finite number",
    "bool_type": "is not a boolean (true or false)",
    "bool_parsing": "is not a boolean (true or false)",
    "list_type": "is not a list",
    "tuple_type": "is not a list",
    "dict_type": "is not a mapping",
    "model_type": "is not a mapping",
    "model_attributes_type": "is not a mapping",
}


def _unknown_field_message(root: type[BaseModel], loc: Loc) -> str:
    key = str(loc[-1])
    model = _model_at(root, loc[:-1])
    if model is None:
        return "unknown field"
    allowed = [f.alias or name for name, f in model.model_fields.items()]
    hint = did_you_mean(key, allowed)
    if hint:
        return "unknown field" + hint
    return f"unknown field (allowed here: {', '.join(allowed)})"


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class found at ``loc`` (aliases and list indices) below ``root``."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (f for n, f in current.model_fields.items() if (f.alias or n) == part), None
            )
            if field is None:
                return None
            current = field.annotation
            continue
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if origin in (tuple, list) and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` from an annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation
