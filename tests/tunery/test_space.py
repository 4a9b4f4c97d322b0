"""tunery.space: parameter validation, snapping, grids, wire parsing and formatting."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tunery.space import Distribution, Parameter, ParameterType, SearchSpace, SpaceError


def test_double_snaps_to_steps_inside_bounds() -> None:
    p = Parameter.double("lr", 0.01, 0.05, step=0.005)
    assert p.grid_values() == (0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05)
    assert p.snap(0.0123) == 0.01
    assert p.snap(1.0) == 0.05
    assert p.snap(-3) == 0.01
    assert p.grid_size() == 9


def test_int_parameter_is_int_typed() -> None:
    p = Parameter.integer("layers", 1, 10, step=3)
    assert p.grid_values() == (1, 4, 7, 10)
    assert p.snap(5.6) == 7 and isinstance(p.snap(5.6), int)
    assert p.parse("4") == 4 and p.parse("4.0") == 4
    with pytest.raises(SpaceError, match="not an integer"):
        p.parse("4.5")
    assert p.format(7) == "7"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Parameter.double("x", 1.0, 1.0), "min 1.0 must be less than max 1.0"),
        (lambda: Parameter.double("x", 2.0, 1.0), "must be less than max"),
        (lambda: Parameter.double("x", 0.0, 1.0, step=0.0), "step 0.0 must be greater than 0"),
        (lambda: Parameter.double("x", 0.0, 1.0, step=-1), "must be greater than 0"),
        (lambda: Parameter.double("x", 0.0, 1.0, step=2), "larger than the range"),
        (
            lambda: Parameter.double("x", 0.0, 1.0, distribution=Distribution.LOG_UNIFORM),
            "must be greater than 0 for distribution logUniform",
        ),
        (lambda: Parameter.double("x", 0.0, math.inf), "not finite"),
        (lambda: Parameter.integer("x", 1, 2.5), "max 2.5 is not an integer"),  # type: ignore[arg-type]
        (lambda: Parameter.categorical("x", []), "must not be empty"),
        (lambda: Parameter.categorical("x", ["a", "a"]), "duplicates"),
        (lambda: Parameter.discrete("x", [1, "b"]), "not a finite number"),  # type: ignore[list-item]
        (lambda: Parameter.categorical("", ["a"]), "name must not be empty"),
    ],
)
def test_invalid_parameters_are_rejected_with_the_reason(build, message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        build()


def test_space_rejects_duplicate_names_and_checks_membership() -> None:
    with pytest.raises(SpaceError, match="duplicate parameter name 'a'"):
        SearchSpace((Parameter.categorical("a", ["x"]), Parameter.categorical("a", ["y"])))
    space = SearchSpace(
        (
            Parameter.double("lr", 1e-4, 1e-1, distribution=Distribution.LOG_UNIFORM),
            Parameter.integer("units", 8, 64, step=8),
            Parameter.discrete("batch", [16, 32, 64]),
            Parameter.categorical("opt", ["sgd", "adam"]),
        )
    )
    good = {"lr": 0.01, "units": 16, "batch": 32, "opt": "adam"}
    assert space.contains(good)
    assert not space.contains({**good, "units": 17})
    assert not space.contains({**good, "units": 16.0})
    assert not space.contains({**good, "opt": "rmsprop"})
    assert not space.contains({**good, "batch": 48})
    assert not space.contains({k: v for k, v in good.items() if k != "lr"})
    wire = space.format_assignment(good)
    assert wire == {"lr": "0.01", "units": "16", "batch": "32", "opt": "adam"}
    assert space.parse_assignment(wire) == good
    assert space.grid_size() is None
    with pytest.raises(SpaceError, match="unknown parameter"):
        space.parse_assignment({**wire, "zzz": "1"})


def test_grid_enumerates_every_combination_once() -> None:
    space = SearchSpace((Parameter.integer("a", 0, 2), Parameter.categorical("b", ["x", "y"])))
    points = list(space.grid())
    assert len(points) == space.grid_size() == 6
    assert len({space.key(p) for p in points}) == 6
    assert points[0] == {"a": 0, "b": "x"} and points[-1] == {"a": 2, "b": "y"}


def test_grid_needs_steps_for_doubles() -> None:
    space = SearchSpace((Parameter.double("x", 0, 1),))
    with pytest.raises(SpaceError, match="step is nil"):
        list(space.grid())


@given(
    low=st.floats(-1e6, 1e6),
    width=st.floats(1e-3, 1e6),
    steps=st.integers(1, 1000),
    x=st.floats(-1e7, 1e7),
)
def test_snap_always_lands_on_a_feasible_step(
    low: float, width: float, steps: int, x: float
) -> None:
    assume(width >= 1e-6 * max(1.0, abs(low)))  # beyond float precision a step is meaningless
    step = width / steps
    p = Parameter.double("x", low, low + width, step=step)
    v = p.snap(x)
    assert p.low <= v <= p.high
    assert p.contains(v)


def test_parameter_type_values_match_katib_yaml() -> None:
    assert [t.value for t in ParameterType] == ["double", "int", "discrete", "categorical"]
    assert [d.value for d in Distribution] == ["uniform", "logUniform", "normal", "logNormal"]
