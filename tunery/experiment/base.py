"""Shared building blocks of the Experiment model: the base model and the field types.

Part of :mod:`tunery.experiment`, used by its sibling modules. ``Node`` gives
every model camelCase aliases, rejects unknown fields and freezes instances; the annotated
field types read Katib's YAML conventions (values as strings, free-form Kubernetes objects)
and report problems with tunery's messages rather than pydantic's.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ModelWrapValidatorHandler,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from tunery.experiment.errors import Problems, custom_error, did_you_mean, reraise_with, show


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
    """Base of every model: camelCase aliases, unknown fields rejected, immutable.

    Validation of a node runs in three steps, which subclasses fill in:

    1. :meth:`_defaults` rewrites the raw mapping with Katib's defaults (webhook defaulting);
    2. pydantic validates the fields, and :meth:`_raw_checks` checks rules that must be read
       from the raw data (they are reported even when a field is invalid);
    3. :meth:`_check` checks rules spanning the node's fields. When some fields are invalid it
       still runs, on the fields that are valid, unless one of ``_requires`` failed; problems
       at invalid fields are left to pydantic's own message. So every problem is reported at
       once, not one layer at a time.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        hide_input_in_errors=True,
    )

    _requires: ClassVar[tuple[str, ...]] = ()
    """Aliases of the fields :meth:`_check` cannot do without."""

    @classmethod
    def _defaults(cls, data: Mapping[str, Any]) -> Mapping[str, Any]:
        return data

    @classmethod
    def _raw_checks(cls, original: Mapping[str, Any], data: Mapping[str, Any]) -> Problems:
        return Problems()

    def _check(self, problems: Problems) -> None:
        """Add the node's cross-field problems (locations relative to the node)."""

    @model_validator(mode="wrap")
    @classmethod
    def _validate_node(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        if not isinstance(data, Mapping):
            return handler(data)
        defaulted = cls._defaults(data)
        problems = cls._raw_checks(data, defaulted)
        try:
            node = handler(defaulted)
        except ValidationError as exc:
            cls._check_partially(defaulted, exc, problems)
            raise reraise_with(exc, problems) from None
        node._check(problems)
        problems.raise_if_any(cls.__name__)
        return node

    @classmethod
    def _check_partially(
        cls, data: Mapping[str, Any], exc: ValidationError, problems: Problems
    ) -> None:
        failed = {err["loc"][0] for err in exc.errors() if err["loc"]}
        if failed & set(cls._requires):
            return
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            alias = field.alias or name
            value = None if field.is_required() else field.get_default(call_default_factory=True)
            if alias in data and alias not in failed:
                try:
                    value = _field_adapter(cls, name).validate_python(data[alias])
                except ValidationError:
                    failed.add(alias)
            values[name] = value
        partial = cls.model_construct(**values)
        found = Problems()
        partial._check(found)
        problems.items.extend(
            item for item in found.items if not item[0] or item[0][0] not in failed
        )

    @model_serializer(mode="wrap")
    def _omit_empty(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None and v != [] and v != ()}
        return data


@functools.cache
def _field_adapter(model: type[Node], name: str) -> TypeAdapter[Any]:
    field = model.model_fields[name]
    annotation: Any = field.annotation
    if field.metadata:
        annotation = Annotated[(annotation, *field.metadata)]  # type: ignore[valid-type]
    return TypeAdapter(annotation)
