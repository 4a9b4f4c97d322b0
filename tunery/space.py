"""Search space: typed parameters, their feasible values, and the wire format of values.

The kernel every package shares. ``tunery.experiment`` builds a :class:`SearchSpace` from the
Experiment YAML, ``suggestion.convert`` builds one from a gRPC ``ExperimentSpec``; algorithms
sample from it; the controller formats assignments with it. Imports nothing from tunery.

Values travel as strings on Katib's wire. :meth:`Parameter.parse` turns a wire string into a
typed value (``int`` for int parameters, ``float`` for double, ``int``/``float`` for numeric
discrete lists, ``str`` for categorical) and :meth:`Parameter.format` turns it back, printing
ints as integers and floats with ``repr`` so no precision is lost.

Conditional parameters (a tunery extension, docs/search-spaces.md): a parameter with a
:class:`Condition` is *active* only when its parent is active and takes one of the condition's
values. An inactive parameter is absent from an assignment: :meth:`SearchSpace.contains`,
:meth:`SearchSpace.parse_assignment` and :meth:`SearchSpace.grid` work on the active
parameters only, and :meth:`SearchSpace.prune` drops the inactive ones from a full point.
"""

from __future__ import annotations

import dataclasses
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
class Condition:
    """A parameter is active only when ``parent`` is active and takes one of ``values``
    (typed values of the parent, checked against its space by :class:`SearchSpace`)."""

    parent: str
    values: tuple[ParamValue, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if not self.parent:
            raise SpaceError("a condition must name its parent parameter")
        if not self.values:
            raise SpaceError(f"the condition on {self.parent!r} must list at least one value")


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
    condition: Condition | None = None
    """Active only when this holds (None: always active)."""

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

    def when(self, parent: str, *values: ParamValue) -> Parameter:
        """This parameter, active only when ``parent`` takes one of ``values``."""
        return dataclasses.replace(self, condition=Condition(parent, values))

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
    """An ordered collection of parameters with unique names, some perhaps conditional."""

    parameters: tuple[Parameter, ...]
    _by_name: Mapping[str, Parameter] = field(init=False, repr=False, compare=False)
    _order: tuple[Parameter, ...] = field(init=False, repr=False, compare=False)

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
        object.__setattr__(self, "_order", _parents_first(self.parameters, by_name))

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self.parameters)

    def __len__(self) -> int:
        return len(self.parameters)

    def __getitem__(self, name: str) -> Parameter:
        return self._by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def parents_first(self) -> tuple[Parameter, ...]:
        """The parameters ordered so that every parent comes before its children."""
        return self._order

    @property
    def is_conditional(self) -> bool:
        """Whether some parameter has a condition."""
        return any(p.condition is not None for p in self.parameters)

    def active(self, assignment: Mapping[str, object]) -> set[str]:
        """Names of the parameters active under ``assignment`` (parents' values read from it;
        a parent absent from it is inactive, and so are its children)."""
        if not self.is_conditional:
            return set(self._by_name)
        out: set[str] = set()
        for p in self._order:  # parents before children
            c = p.condition
            if c is None or (c.parent in out and _holds(c, assignment.get(c.parent))):
                out.add(p.name)
        return out

    def prune(self, assignment: Mapping[str, ParamValue]) -> Assignment:
        """``assignment`` without its inactive parameters (in parameter order)."""
        active = self.active(assignment)
        return {p.name: assignment[p.name] for p in self.parameters if p.name in active}

    def contains(self, assignment: Mapping[str, object]) -> bool:
        """Whether ``assignment`` names exactly this space's active parameters, each feasible."""
        if set(assignment) != self.active(assignment):
            return False
        return all(p.contains(assignment[p.name]) for p in self.parameters if p.name in assignment)

    def grid_size(self) -> int | None:
        """Number of grid points (active combinations only), or None when some parameter is
        continuous."""
        sizes = [p.grid_size() for p in self.parameters]
        if any(size is None for size in sizes):
            return None
        if not self.is_conditional:
            return math.prod(sizes)  # type: ignore[arg-type]
        return self._count_active()

    def _count_active(self) -> int:
        """Active combinations, counted without listing them: branch only on the values of
        parents that some condition names (every other value of a parent behaves alike and is
        counted once with its multiplicity), multiply the sizes of the rest."""
        parents = {p.condition.parent for p in self.parameters if p.condition is not None}
        order = [p for p in self._order if p.name in parents]
        named: dict[str, list[ParamValue]] = {name: [] for name in parents}
        for p in self.parameters:
            if p.condition is not None:
                values = named[p.condition.parent]
                values.extend(v for v in p.condition.values if v not in values)
        leaves = [p for p in self.parameters if p.name not in parents]
        other = object()  # any value of a parent that no condition names

        def active(p: Parameter, assigned: Mapping[str, object]) -> bool:
            c = p.condition
            return c is None or (c.parent in assigned and _holds(c, assigned[c.parent]))

        def count(i: int, assigned: dict[str, object]) -> int:
            if i == len(order):
                return math.prod(p.grid_size() or 0 for p in leaves if active(p, assigned))
            p = order[i]
            if not active(p, assigned):
                return count(i + 1, assigned)
            size = p.grid_size() or 0
            total = 0
            for value in named[p.name]:
                assigned[p.name] = value
                total += count(i + 1, assigned)
            rest = size - len(named[p.name])
            if rest > 0:
                assigned[p.name] = other
                total += rest * count(i + 1, assigned)
            del assigned[p.name]
            return total

        return count(0, {})

    def grid(self) -> Iterator[Assignment]:
        """Every grid point in row-major order of the parameters (the last varies fastest);
        an inactive parameter takes no value (so each active combination comes once).

        Raises:
            SpaceError: a double parameter has no step.
        """
        axes = [p.grid_values() for p in self.parameters]
        if not self.is_conditional:
            for combo in itertools.product(*axes):
                yield dict(zip(self.names, combo, strict=True))
            return
        yield from self._conditional_grid(0, {}, axes)

    def _conditional_grid(
        self, i: int, partial: dict[str, ParamValue], axes: list[tuple[ParamValue, ...]]
    ) -> Iterator[Assignment]:
        if i == len(self.parameters):
            yield self.prune(partial)
            return
        p = self.parameters[i]
        c = p.condition
        # a parent may come later in the order: branch now, prune at the end (a child whose
        # parent is declared after it is decided once the parent is)
        if c is not None and c.parent in partial and not _holds(c, partial[c.parent]):
            yield from self._conditional_grid(i + 1, partial, axes)
            return
        seen: set[tuple[object, ...]] = set()
        for value in axes[i]:
            partial[p.name] = value
            for point in self._conditional_grid(i + 1, partial, axes):
                key = tuple(point.items())
                if key not in seen:
                    seen.add(key)
                    yield point
        del partial[p.name]

    def parse_assignment(self, wire: Mapping[str, str]) -> Assignment:
        """Typed assignment from wire strings; raises SpaceError on unknown/missing names and
        on values given for inactive parameters."""
        unknown = set(wire) - set(self._by_name)
        if unknown:
            raise SpaceError(f"unknown parameter(s) {sorted(unknown)}")
        typed = {p.name: p.parse(wire[p.name]) for p in self.parameters if p.name in wire}
        active = self.active(typed)
        missing = active - set(wire)
        if missing:
            raise SpaceError(f"missing parameter(s) {sorted(missing)}")
        inactive = set(wire) - active
        if inactive:
            raise SpaceError(
                f"parameter(s) {sorted(inactive)} given but inactive: "
                + "; ".join(_describe(self._by_name[n]) for n in sorted(inactive))
            )
        return typed

    def format_assignment(self, assignment: Mapping[str, ParamValue]) -> dict[str, str]:
        return {
            p.name: p.format(assignment[p.name]) for p in self.parameters if p.name in assignment
        }

    def key(self, assignment: Mapping[str, ParamValue]) -> tuple[str, ...]:
        """Hashable identity of an assignment (wire strings in parameter order, "" for an
        absent, inactive parameter)."""
        return tuple(
            p.format(assignment[p.name]) if p.name in assignment else "" for p in self.parameters
        )


def _holds(condition: Condition, value: object) -> bool:
    if value is None or isinstance(value, bool):
        return False
    return any(value == v and type(value) is not bool for v in condition.values)


def _describe(p: Parameter) -> str:
    c = p.condition
    assert c is not None
    return f"{p.name} needs {c.parent} in {list(c.values)}"


def _parents_first(
    parameters: tuple[Parameter, ...], by_name: Mapping[str, Parameter]
) -> tuple[Parameter, ...]:
    """The parameters with every parent before its children.

    Raises:
        SpaceError: a condition names an unknown parameter or itself, lists a value outside
            its parent's space, or the conditions form a cycle.
    """
    for p in parameters:
        c = p.condition
        if c is None:
            continue
        if c.parent == p.name:
            raise SpaceError(f"{p.name}: a parameter cannot be conditional on itself")
        parent = by_name.get(c.parent)
        if parent is None:
            raise SpaceError(
                f"{p.name}: the condition names {c.parent!r}, which is not a parameter "
                f"(parameters: {', '.join(by_name)})"
            )
        for v in c.values:
            if not parent.contains(v):
                raise SpaceError(
                    f"{p.name}: the condition value {v!r} is not a value of {c.parent}"
                )
    order: list[Parameter] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(p: Parameter, path: list[str]) -> None:
        if state.get(p.name) == 2:
            return
        if state.get(p.name) == 1:
            cycle = " -> ".join([*path[path.index(p.name) :], p.name])
            raise SpaceError(f"the conditions form a cycle: {cycle}")
        state[p.name] = 1
        if p.condition is not None:
            visit(by_name[p.condition.parent], [*path, p.name])
        state[p.name] = 2
        order.append(p)

    for p in parameters:
        visit(p, [])
    return tuple(order)
