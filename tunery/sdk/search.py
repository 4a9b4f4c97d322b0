"""Search-space helpers of the SDK: ``search.double``, ``search.int``, ``search.categorical``,
``search.discrete``.

Part of the SDK (imports only ``tunery.space``), exported as ``tunery.search``. Called by users
building the ``parameters`` of :func:`tunery.tune`; ``tunery.sdk`` turns each
:class:`SearchSpec` into the parameter spec of an Experiment document (the same mapping a YAML
``spec.parameters[]`` entry holds) and into a typed :class:`tunery.space.Parameter`.

Each helper validates at once, so a bad range fails where it is written, not minutes later::

    from tunery import search

    parameters = {
        "lr": search.double(1e-4, 1e-1, distribution="logUniform"),
        "hidden": search.int(16, 256, step=16),
        "optimizer": search.categorical(["sgd", "adam"]),
        "batch_size": search.discrete([32, 64, 128]),
        "epochs": 10,  # not a search spec: passed to the objective unchanged
    }

Unlike Katib's ``katib.search`` (which has no ``discrete`` helper and no distribution), the
objective receives real Python types: ``int`` for int parameters, ``float`` for double,
``str`` for categorical and the list's own numbers for discrete.

Conditional parameters (a tunery extension): ``.when(parent, *values)`` makes a parameter
active only when ``parent`` takes one of ``values``; the objective's dict then lacks it::

    parameters = {
        "optimizer": search.categorical(["sgd", "adam"]),
        "momentum": search.double(0.0, 0.99).when("optimizer", "sgd"),
    }
"""

from __future__ import annotations

import builtins
import dataclasses
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tunery.space import (
    Distribution,
    Parameter,
    ParameterType,
    ParamValue,
    SpaceError,
    format_value,
)

__all__ = ["SearchSpec", "categorical", "discrete", "double", "int"]

_Int = builtins.int
_PLACEHOLDER_NAME = "parameter"

_DISTRIBUTION_ALIASES = {
    "uniform": Distribution.UNIFORM,
    "loguniform": Distribution.LOG_UNIFORM,
    "log_uniform": Distribution.LOG_UNIFORM,
    "log-uniform": Distribution.LOG_UNIFORM,
    "normal": Distribution.NORMAL,
    "lognormal": Distribution.LOG_NORMAL,
    "log_normal": Distribution.LOG_NORMAL,
    "log-normal": Distribution.LOG_NORMAL,
}


@dataclass(frozen=True)
class SearchSpec:
    """A parameter's type and feasible space, not yet named (the name is its key in
    ``parameters``). Build one with :func:`double`, :func:`int`, :func:`categorical` or
    :func:`discrete`; they validate, so every SearchSpec is feasible.
    """

    parameter_type: ParameterType
    min: _Int | float | None = None
    max: _Int | float | None = None
    step: _Int | float | None = None
    values: tuple[ParamValue, ...] = ()
    distribution: Distribution = Distribution.UNIFORM
    condition: tuple[str, tuple[ParamValue, ...]] | None = None
    """(parent name, parent values): active only when the parent takes one of the values."""

    def when(self, parent: str, *values: Any) -> SearchSpec:
        """This parameter, active only when ``parent`` (another key of ``parameters``) takes
        one of ``values`` (``.when("optimizer", "sgd", "nag")``, or one list). Checked against
        the parent when the space is built (``tune`` reports an unknown parent, a value the
        parent does not have, or a cycle).

        Raises:
            TypeError: ``parent`` is not a non-empty string, or no values are given.
        """
        if not isinstance(parent, str) or not parent:
            raise TypeError(f"when() takes the parent parameter's name, got {parent!r}")
        if len(values) == 1 and isinstance(values[0], list | tuple | set | frozenset):
            values = tuple(values[0])
        if not values:
            raise TypeError(f"when({parent!r}) needs at least one value of {parent!r}")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, str | numbers.Real):
                raise TypeError(f"when({parent!r}): {v!r} is not a parameter value")
        return dataclasses.replace(self, condition=(parent, tuple(values)))

    def to_parameter(self, name: str) -> Parameter:
        """The typed search-space parameter called ``name``.

        Raises:
            SpaceError: ``name`` is empty (the space itself was checked at construction).
        """
        kind = self.parameter_type
        if kind is ParameterType.CATEGORICAL:
            return Parameter.categorical(name, [str(v) for v in self.values])
        if kind is ParameterType.DISCRETE:
            return Parameter.discrete(name, [v for v in self.values if not isinstance(v, str)])
        assert self.min is not None and self.max is not None
        if kind is ParameterType.INT:
            step = 1 if self.step is None else _Int(self.step)
            return Parameter.integer(name, _Int(self.min), _Int(self.max), step, self.distribution)
        return Parameter.double(name, self.min, self.max, self.step, self.distribution)

    def feasible_space(self) -> dict[str, Any]:
        """Katib's ``feasibleSpace`` mapping: every value a string, as in YAML."""
        space: dict[str, Any] = {}
        if self.parameter_type in (ParameterType.DOUBLE, ParameterType.INT):
            assert self.min is not None and self.max is not None
            space["min"] = format_value(self.min)
            space["max"] = format_value(self.max)
            if self.step is not None:
                space["step"] = format_value(self.step)
            space["distribution"] = self.distribution.value
        else:
            space["list"] = [format_value(v) for v in self.values]
        return space

    def to_parameter_spec(self, name: str) -> dict[str, Any]:
        """The Experiment's ``spec.parameters[]`` entry for this parameter called ``name``."""
        out: dict[str, Any] = {
            "name": name,
            "parameterType": self.parameter_type.value,
            "feasibleSpace": self.feasible_space(),
        }
        if self.condition is not None:
            parent, values = self.condition
            out["condition"] = {
                "parameter": parent,
                "values": [v if isinstance(v, str) else format_value(v) for v in values],
            }
        return out


def _distribution(value: str | Distribution) -> Distribution:
    if isinstance(value, Distribution):
        return value
    if isinstance(value, str):
        found = _DISTRIBUTION_ALIASES.get(value.strip().lower())
        if found is not None:
            return found
    valid = ", ".join(repr(d.value) for d in Distribution)
    raise ValueError(f"distribution {value!r} is not one of {valid}")


def _number(label: str, value: object, *, integer: bool) -> _Int | float:
    """``value`` as a plain ``int`` or ``float`` (numpy scalars included); bools are refused."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{label} must be {kind}, got {value!r}")
    if isinstance(value, numbers.Integral):
        return _Int(value)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{label} must be finite, got {value!r}")
    if integer:
        if not number.is_integer():
            raise TypeError(f"{label} must be {kind}, got {value!r}")
        return _Int(number)
    return number


def _checked(spec: SearchSpec) -> SearchSpec:
    try:
        spec.to_parameter(_PLACEHOLDER_NAME)
    except SpaceError as exc:
        message = str(exc).removeprefix(f"{_PLACEHOLDER_NAME}: ")
        raise ValueError(message) from None
    return spec


def double(
    min: float,
    max: float,
    step: float | None = None,
    distribution: str | Distribution = Distribution.UNIFORM,
) -> SearchSpec:
    """A float parameter in ``[min, max]``, on a grid of ``step`` when given.

    Args:
        min: lower bound (inclusive).
        max: upper bound (inclusive); must be greater than ``min``.
        step: grid step (grid search needs one for every double parameter).
        distribution: ``"uniform"`` (default), ``"logUniform"``, ``"normal"`` or
            ``"logNormal"``; log distributions need ``min > 0``.

    Raises:
        TypeError: a bound or step is not a number.
        ValueError: ``min >= max``, ``step <= 0`` or larger than the range, an unknown
            distribution, or a log distribution with ``min <= 0``.
    """
    return _checked(
        SearchSpec(
            ParameterType.DOUBLE,
            _number("min", min, integer=False),
            _number("max", max, integer=False),
            None if step is None else _number("step", step, integer=False),
            distribution=_distribution(distribution),
        )
    )


def categorical(values: Iterable[str]) -> SearchSpec:
    """A parameter taking one of ``values`` (strings); the objective receives the ``str``.

    Raises:
        TypeError: a value is not a string (use :func:`discrete` for numbers).
        ValueError: the list is empty or has duplicates.
    """
    if isinstance(values, str):
        raise TypeError(f"categorical takes a list of strings, got the string {values!r}")
    items = tuple(values)
    for v in items:
        if not isinstance(v, str):
            raise TypeError(
                f"categorical values must be strings, got {v!r}; use search.discrete for numbers"
            )
    return _checked(SearchSpec(ParameterType.CATEGORICAL, values=items))


def discrete(values: Iterable[float]) -> SearchSpec:
    """A parameter taking one of the numbers in ``values``; the objective receives the list's
    own value (``int`` or ``float``).

    Raises:
        TypeError: a value is not a number (use :func:`categorical` for strings).
        ValueError: the list is empty, has duplicates or a non-finite number.
    """
    if isinstance(values, str):
        raise TypeError(f"discrete takes a list of numbers, got the string {values!r}")
    items: list[ParamValue] = []
    for v in values:
        if isinstance(v, str):
            raise TypeError(
                f"discrete values must be numbers, got {v!r}; use search.categorical for strings"
            )
        number = _number("a discrete value", v, integer=False)
        items.append(number)
    return _checked(SearchSpec(ParameterType.DISCRETE, values=tuple(items)))


def int(  # mirrors katib.search.int (shadows the builtin here only)
    min: _Int,
    max: _Int,
    step: _Int | None = None,
    distribution: str | Distribution = Distribution.UNIFORM,
) -> SearchSpec:
    """An integer parameter in ``[min, max]`` (both inclusive), every ``step`` (default 1).

    Args:
        min: lower bound.
        max: upper bound; ``min == max`` is allowed (a fixed value).
        step: distance between feasible values.
        distribution: ``"uniform"`` (default), ``"logUniform"``, ``"normal"`` or
            ``"logNormal"``.

    Raises:
        TypeError: a bound or step is not an integer.
        ValueError: ``min > max``, ``step <= 0`` or larger than the range, an unknown
            distribution, or a log distribution with ``min <= 0``.
    """
    return _checked(
        SearchSpec(
            ParameterType.INT,
            _number("min", min, integer=True),
            _number("max", max, integer=True),
            None if step is None else _number("step", step, integer=True),
            distribution=_distribution(distribution),
        )
    )
