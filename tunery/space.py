"""Search space: typed parameters, their feasible values, and the wire format of values.

The kernel every package shares. ``tunery.experiment`` builds a :class:`SearchSpace` from the
Experiment YAML, ``suggestion.convert`` builds one from a gRPC ``ExperimentSpec``; algorithms
sample from it; the controller formats assignments with it. Imports nothing from tunery.

Values travel as strings on Katib's wire. :meth:`Parameter.parse` turns a wire string into a
typed value (``int`` for int parameters, ``float`` for double, ``int``/``float`` for numeric
discrete lists, ``str`` for categorical) and :meth:`Parameter.format` turns it back, printing
ints as integers and floats with ``repr`` so no precision is lost.
"""

from __future__ import annotations

import enum
import itertools
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

ParamValue = int | float | str

_STEP_TOLERANCE = 1e-6
"""Relative slack when counting steps in a range, so float noise never drops the last step."""
Assignment = dict[str, ParamValue]

_LARGEST_FLOAT = int(sys.float_info.max)


class SpaceError(ValueError):
    """A parameter or search space is malformed, or a value is outside it."""


class ParameterType(enum.StrEnum):
    DOUBLE = "double"
    INT = "int"
    DISCRETE = "discrete"
    CATEGORICAL = "categorical"


class Distribution(enum.StrEnum):
    UNIFORM = "uniform"
    LOG_UNIFORM = "logUniform"
    NORMAL = "normal"
    LOG_NORMAL = "logNormal"

    @property
    def is_log(self) -> bool:
        return self in (Distribution.LOG_UNIFORM, Distribution.LOG_NORMAL)


def parse_number(text: str) -> int | float:
    """Parse ``text`` as an int when it is integral in form (``"3"``), else as a float.

    Raises:
        SpaceError: ``text`` is not a finite number.
    """
    stripped = text.strip()
    try:
        integer = int(stripped)
    except ValueError:  # not integral in form, or more digits than Python parses
        pass
    else:
        if abs(integer) > _LARGEST_FLOAT:  # every algorithm computes in floats
            raise SpaceError(f"{_shorten(text)} is too large (beyond a double's range)")
        return integer
    try:
        number = float(stripped)
    except ValueError:
        raise SpaceError(f"{_shorten(text)} is not a number") from None
    if not math.isfinite(number):
        raise SpaceError(f"{_shorten(text)} is not a finite number")
    return number


def _shorten(text: str, limit: int = 40) -> str:
    """``repr`` of ``text``, cut in the middle when long (errors quote user input)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[: limit // 2]!r}...{text[-limit // 2 :]!r} ({len(text)} characters)"


def format_value(value: ParamValue) -> str:
    """Wire form of a value: ints as integers, floats round-trippable, strings unchanged."""
    if isinstance(value, bool):
        raise SpaceError(f"{value!r} is a bool, not a parameter value")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form; "3.0" keeps a double's type visible
    return value


@dataclass(frozen=True)
class Parameter:
    """One tunable parameter.

    ``low``/``high``/``step`` are set for double and int parameters; ``values`` for discrete
    (numbers) and categorical (strings). Construct through the classmethods, which validate.
    """

    name: str
    type: ParameterType
    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = None
    values: tuple[ParamValue, ...] = ()
    distribution: Distribution = Distribution.UNIFORM

    def __post_init__(self) -> None:
        if not self.name:
            raise SpaceError("parameter name must not be empty")
        if self.type in (ParameterType.DOUBLE, ParameterType.INT):
            self._check_range()
        else:
            self._check_values()

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def double(
        cls,
        name: str,
        low: float,
        high: float,
        step: float | None = None,
        distribution: Distribution = Distribution.UNIFORM,
    ) -> Parameter:
        return cls(
            name,
            ParameterType.DOUBLE,
            float(low),
            float(high),
            None if step is None else float(step),
            (),
            Distribution(distribution),
        )

    @classmethod
    def integer(
        cls,
        name: str,
        low: int,
        high: int,
        step: int = 1,
        distribution: Distribution = Distribution.UNIFORM,
    ) -> Parameter:
        return cls(name, ParameterType.INT, low, high, step, (), Distribution(distribution))

    @classmethod
    def discrete(cls, name: str, values: Sequence[int | float]) -> Parameter:
        return cls(name, ParameterType.DISCRETE, values=tuple(values))

    @classmethod
    def categorical(cls, name: str, values: Sequence[str]) -> Parameter:
        return cls(name, ParameterType.CATEGORICAL, values=tuple(values))

    # -- validation ---------------------------------------------------------------------------

    def _check_range(self) -> None:
        low, high, step = self.low, self.high, self.step
        if low is None or high is None:
            raise SpaceError(f"{self.name}: min and max are required for {self.type} parameters")
        if self.values:
            raise SpaceError(f"{self.name}: a {self.type} parameter takes min/max, not a list")
        if self.type is ParameterType.INT:
            for label, bound in (("min", low), ("max", high), ("step", step)):
                if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
                    raise SpaceError(f"{self.name}: {label} {bound!r} is not an integer")
        for label, bound in (("min", low), ("max", high)):
            if not math.isfinite(bound):
                raise SpaceError(f"{self.name}: {label} {bound!r} is not finite")
        if not low < high and not (low == high and self.type is ParameterType.INT):
            raise SpaceError(f"{self.name}: min {low!r} must be less than max {high!r}")
        if step is not None and not (math.isfinite(step) and step > 0):
            raise SpaceError(f"{self.name}: step {step!r} must be greater than 0")
        if step is not None and not math.isfinite((high - low) / step):
            raise SpaceError(
                f"{self.name}: the range [{low!r}, {high!r}] holds too many steps of {step!r} "
                "to count"
            )
        if step is not None and step > (high - low) * (1 + _STEP_TOLERANCE) and low != high:
            raise SpaceError(
                f"{self.name}: step {step!r} is larger than the range [{low!r}, {high!r}]"
            )
        if self.distribution.is_log and low <= 0:
            raise SpaceError(
                f"{self.name}: min {low!r} must be greater than 0 for distribution "
                f"{self.distribution}"
            )

    def _check_values(self) -> None:
        if self.low is not None or self.high is not None or self.step is not None:
            raise SpaceError(
                f"{self.name}: a {self.type} parameter takes a list, not min/max/step"
            )
        if not self.values:
            raise SpaceError(f"{self.name}: the list of values must not be empty")
        if len(set(self.values)) != len(self.values):
            raise SpaceError(f"{self.name}: the list of values has duplicates")
        if self.type is ParameterType.DISCRETE:
            for v in self.values:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise SpaceError(f"{self.name}: discrete value {v!r} is not a finite number")
        elif not all(isinstance(v, str) for v in self.values):
            raise SpaceError(f"{self.name}: categorical values must be strings")

    # -- queries ------------------------------------------------------------------------------

    @property
    def is_numeric_range(self) -> bool:
        """True for double and int parameters (a min/max range)."""
        return self.type in (ParameterType.DOUBLE, ParameterType.INT)

    @property
    def is_continuous(self) -> bool:
        return self.type is ParameterType.DOUBLE and self.step is None

    def grid_values(self) -> tuple[ParamValue, ...]:
        """Every feasible value, in order. Doubles need a step.

        Raises:
            SpaceError: a double parameter without a step.
        """
        if not self.is_numeric_range:
            return self.values
        assert self.low is not None and self.high is not None
        if self.type is ParameterType.INT:
            step = int(self.step or 1)
            return tuple(range(int(self.low), int(self.high) + 1, step))
        if self.step is None:
            raise SpaceError(
                f"Param {self.name} step is nil; For discrete search space, all parameters "
                "must include step"
            )
        count = math.floor((self.high - self.low) / self.step + _STEP_TOLERANCE) + 1
        return tuple(self.snap(self.low + k * self.step) for k in range(count))

    def grid_size(self) -> int | None:
        """Number of feasible values, or None when continuous."""
        if self.is_continuous:
            return None
        if self.type is ParameterType.INT:
            assert self.low is not None and self.high is not None
            return (int(self.high) - int(self.low)) // int(self.step or 1) + 1
        if self.type is ParameterType.DOUBLE:
            assert self.low is not None and self.high is not None and self.step is not None
            return math.floor((self.high - self.low) / self.step + _STEP_TOLERANCE) + 1
        return len(self.values)

    def snap(self, value: float) -> ParamValue:
        """The feasible value nearest to ``value`` for numeric-range parameters.

        Clips to [low, high], rounds to ``low + k*step`` (k integral) where a step is set, and
        returns an ``int`` for int parameters. Floating noise is removed by rounding to 12
        significant digits relative to the step.
        """
        assert self.low is not None and self.high is not None
        x = min(max(float(value), float(self.low)), float(self.high))
        if self.type is ParameterType.INT:
            step = int(self.step or 1)
            k = round((x - self.low) / step)
            k = min(k, (int(self.high) - int(self.low)) // step)
            return int(self.low) + k * step
        if self.step is None:
            return x
        k = round((x - self.low) / self.step)
        k = max(0, min(k, math.floor((self.high - self.low) / self.step + _STEP_TOLERANCE)))
        snapped = self.low + k * self.step
        digits = max(0, 12 - math.floor(math.log10(self.step)))
        return min(max(round(snapped, digits), float(self.low)), float(self.high))

    def contains(self, value: object) -> bool:
        """Whether ``value`` (a typed value, not a wire string) is feasible."""
        if self.type is ParameterType.CATEGORICAL:
            return isinstance(value, str) and value in self.values
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.type is ParameterType.DISCRETE:
            return any(value == v for v in self.values)
        assert self.low is not None and self.high is not None
        if self.type is ParameterType.INT and not isinstance(value, int):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step is not None:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-4
        return True

    def parse(self, text: str) -> ParamValue:
        """Typed value of a wire string.

        Raises:
            SpaceError: the string is not a value of this parameter's type.
        """
        if self.type is ParameterType.CATEGORICAL:
            return text
        try:
            number = parse_number(text)
        except SpaceError as exc:
            raise SpaceError(f"{self.name}: {exc}") from None
        if self.type is ParameterType.INT:
            if isinstance(number, float):
                if not number.is_integer():
                    raise SpaceError(f"{self.name}: {text!r} is not an integer")
                number = int(number)
            return number
        if self.type is ParameterType.DOUBLE:
            return float(number)
        for v in self.values:  # discrete: return the list's own representation
            if v == number:
                return v
        return number

    def format(self, value: ParamValue) -> str:
        if self.type is ParameterType.INT and isinstance(value, float) and value.is_integer():
            value = int(value)
        if self.type is ParameterType.DOUBLE and isinstance(value, int):
            value = float(value)
        return format_value(value)


@dataclass(frozen=True)
class SearchSpace:
    """An ordered collection of parameters with unique names."""

    parameters: tuple[Parameter, ...]
    _by_name: Mapping[str, Parameter] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", tuple(self.parameters))
        by_name: dict[str, Parameter] = {}
        for p in self.parameters:
            if p.name in by_name:
                raise SpaceError(f"duplicate parameter name {p.name!r}")
            by_name[p.name] = p
        if not by_name:
            raise SpaceError("the search space has no parameters")
        object.__setattr__(self, "_by_name", by_name)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self.parameters)

    def __len__(self) -> int:
        return len(self.parameters)

    def __getitem__(self, name: str) -> Parameter:
        return self._by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def contains(self, assignment: Mapping[str, object]) -> bool:
        """Whether ``assignment`` names exactly this space's parameters, each feasible."""
        if set(assignment) != set(self._by_name):
            return False
        return all(p.contains(assignment[p.name]) for p in self.parameters)

    def grid_size(self) -> int | None:
        """Number of grid points, or None when some parameter is continuous."""
        total = 1
        for p in self.parameters:
            size = p.grid_size()
            if size is None:
                return None
            total *= size
        return total

    def grid(self) -> Iterator[Assignment]:
        """Every grid point in row-major order of the parameters (the last varies fastest).

        Raises:
            SpaceError: a double parameter has no step.
        """
        axes = [p.grid_values() for p in self.parameters]
        for combo in itertools.product(*axes):
            yield dict(zip(self.names, combo, strict=True))

    def parse_assignment(self, wire: Mapping[str, str]) -> Assignment:
        """Typed assignment from wire strings; raises SpaceError on unknown/missing names."""
        unknown = set(wire) - set(self._by_name)
        if unknown:
            raise SpaceError(f"unknown parameter(s) {sorted(unknown)}")
        missing = set(self._by_name) - set(wire)
        if missing:
            raise SpaceError(f"missing parameter(s) {sorted(missing)}")
        return {p.name: p.parse(wire[p.name]) for p in self.parameters}

    def format_assignment(self, assignment: Mapping[str, ParamValue]) -> dict[str, str]:
        return {p.name: p.format(assignment[p.name]) for p in self.parameters}

    def key(self, assignment: Mapping[str, ParamValue]) -> tuple[str, ...]:
        """Hashable identity of an assignment (wire strings in parameter order)."""
        return tuple(p.format(assignment[p.name]) for p in self.parameters)
