"""Conditional parameters in the kernel search space: validation, activity, the grid of active
combinations, wire parsing and keys (issue 20 point 2)."""

from __future__ import annotations

import pytest

from tunery.space import Condition, Parameter, SearchSpace, SpaceError

OPT = Parameter.categorical("opt", ["sgd", "adam"])
MOMENTUM = Parameter.double("momentum", 0.0, 0.9, step=0.45).when("opt", "sgd")
NESTEROV = Parameter.categorical("nesterov", ["y", "n"]).when("momentum", 0.45, 0.9)
SPACE = SearchSpace((OPT, MOMENTUM, NESTEROV, Parameter.integer("layers", 1, 2)))


def test_activity_follows_parents_transitively() -> None:
    assert SPACE.active({"opt": "adam", "layers": 1}) == {"opt", "layers"}
    assert SPACE.active({"opt": "sgd", "momentum": 0.0}) == {"opt", "momentum", "layers"}
    assert SPACE.active({"opt": "sgd", "momentum": 0.45}) == {
        "opt",
        "momentum",
        "nesterov",
        "layers",
    }
    # a momentum value left over from a full point does not activate nesterov under adam
    assert "nesterov" not in SPACE.active({"opt": "adam", "momentum": 0.9})


def test_prune_and_contains() -> None:
    full = {"opt": "adam", "momentum": 0.9, "nesterov": "y", "layers": 2}
    assert SPACE.prune(full) == {"opt": "adam", "layers": 2}
    assert SPACE.contains({"opt": "adam", "layers": 2})
    assert not SPACE.contains(full)  # inactive parameters given
    assert not SPACE.contains({"opt": "sgd", "layers": 2})  # active momentum missing


def test_grid_lists_each_active_combination_once() -> None:
    grid = list(SPACE.grid())
    # sgd: momentum 0 x 2 layers + momentum 0.45/0.9 x nesterov x 2 layers; adam: 2 layers
    assert len(grid) == SPACE.grid_size() == 2 + 8 + 2
    assert len({SPACE.key(a) for a in grid}) == len(grid)
    assert all(SPACE.contains(a) for a in grid)


def test_parse_assignment_refuses_inactive_and_missing_parameters() -> None:
    assert SPACE.parse_assignment({"opt": "adam", "layers": "1"}) == {"opt": "adam", "layers": 1}
    with pytest.raises(SpaceError, match=r"\['momentum'\] given but inactive: momentum needs"):
        SPACE.parse_assignment({"opt": "adam", "momentum": "0.0", "layers": "1"})
    with pytest.raises(SpaceError, match=r"missing parameter\(s\) \['momentum'\]"):
        SPACE.parse_assignment({"opt": "sgd", "layers": "1"})
    assert SPACE.format_assignment({"opt": "adam", "layers": 1}) == {"opt": "adam", "layers": "1"}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ((OPT, Parameter.integer("n", 1, 2).when("optim", "sgd")), "'optim', which is not a"),
        ((OPT, Parameter.integer("n", 1, 2).when("n", 1)), "conditional on itself"),
        ((OPT, Parameter.integer("n", 1, 2).when("opt", "nag")), "'nag' is not a value of opt"),
        (
            (
                Parameter.integer("a", 1, 2).when("b", 1),
                Parameter.integer("b", 1, 2).when("c", 1),
                Parameter.integer("c", 1, 2).when("a", 2),
            ),
            "cycle: a -> b -> c -> a",
        ),
    ],
)
def test_bad_conditions_are_refused(parameters: tuple[Parameter, ...], message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        SearchSpace(parameters)


def test_a_condition_needs_values() -> None:
    with pytest.raises(SpaceError, match="at least one value"):
        Condition("opt", ())


def test_an_unconditional_space_is_unchanged() -> None:
    plain = SearchSpace((OPT, Parameter.integer("layers", 1, 3)))
    assert not plain.is_conditional
    assert plain.grid_size() == 6 and len(list(plain.grid())) == 6


@pytest.mark.parametrize(
    "space",
    [
        SPACE,
        SearchSpace(
            (
                Parameter.integer("depth", 1, 6),
                Parameter.integer("leaf", 1, 5).when("depth", 2, 3),
                Parameter.categorical("split", ["a", "b", "c"]).when("leaf", 1, 5),
                Parameter.categorical("kind", ["x", "y"]).when("depth", 6),
                Parameter.discrete("w", [1, 2]),
            )
        ),
    ],
)
def test_the_counted_grid_size_equals_the_listed_grid(space: SearchSpace) -> None:
    assert space.grid_size() == len(list(space.grid()))


def test_a_huge_conditional_space_is_counted_without_listing_it() -> None:
    space = SearchSpace(
        (
            Parameter.categorical("model", ["a", "b"]),
            Parameter.integer("n", 1, 100_000).when("model", "a"),
            Parameter.integer("k", 1, 100_000).when("model", "a"),
            Parameter.integer("j", 1, 50).when("n", 3, 4),
        )
    )
    # model a: n in {3, 4} brings j (50 values), the other 99,998 values of n do not
    assert space.grid_size() == (2 * 50 + 99_998) * 100_000 + 1
