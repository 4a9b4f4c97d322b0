"""tune() end to end with a conditional search space and a constraint (issue 20 points 2-3):
the objective never sees an inactive parameter, and an infeasible trial is never the best."""

from __future__ import annotations

import pytest

from tunery import search, tune
from tunery.sdk import InvalidArgumentError

pytestmark = pytest.mark.usefixtures("isolated_cwd")


def conditional_objective(p: dict) -> dict:
    """Fails the trial when a parameter's presence does not match its condition."""
    if ("momentum" in p) != (p["optimizer"] == "sgd"):
        raise AssertionError(f"momentum present={'momentum' in p} for {p['optimizer']}")
    if ("beta" in p) != (p["optimizer"] == "adam"):
        raise AssertionError(f"beta present={'beta' in p} for {p['optimizer']}")
    rest = (1.0 - p.get("momentum", 0.0)) + p.get("beta", 0.5)
    # the loss rewards a large lr; the constraint makes lr above 0.05 infeasible
    return {"loss": 0.01 * rest - 10 * p["lr"], "slow": p["lr"] - 0.05}


def test_tune_with_a_conditional_space_and_a_constraint() -> None:
    result = tune(
        conditional_objective,
        {
            "optimizer": search.categorical(["sgd", "adam"]),
            "momentum": search.double(0.0, 0.9).when("optimizer", "sgd"),
            "beta": search.double(0.1, 0.9).when("optimizer", "adam"),
            "lr": search.double(0.01, 0.1),
        },
        name="conditional",
        objective_metric_name="loss",
        objective_type="minimize",
        constraints=["slow"],
        algorithm_name="random",
        seed=3,
        max_trial_count=12,
        parallel_trial_count=3,
        verbose=False,
    )
    assert len(result.trials) == 12
    assert all(t.condition == "Succeeded" for t in result.trials), [
        (t.name, t.message) for t in result.trials
    ]
    for trial in result.trials:
        assert ("momentum" in trial.parameters) == (trial.parameters["optimizer"] == "sgd")
        assert ("beta" in trial.parameters) == (trial.parameters["optimizer"] == "adam")
    feasible = [t for t in result.trials if t.metrics["slow"] <= 0]
    infeasible = [t for t in result.trials if t.metrics["slow"] > 0]
    assert feasible and infeasible  # the seed gives both kinds
    best = min(feasible, key=lambda t: t.metrics["loss"])
    assert result.best_trial == best.name
    assert result.best_parameters == dict(best.parameters)
    # the objective rewards a large lr, so the unconstrained best would be infeasible
    assert min(result.trials, key=lambda t: t.metrics["loss"]).metrics["slow"] > 0


def test_tune_refuses_a_condition_on_an_unknown_parameter() -> None:
    with pytest.raises(InvalidArgumentError, match="'momentum' is conditional on 'optimiser'"):
        tune(
            conditional_objective,
            {
                "optimizer": search.categorical(["sgd", "adam"]),
                "momentum": search.double(0.0, 0.9).when("optimiser", "sgd"),
            },
            verbose=False,
        )


def test_tune_refuses_a_condition_value_the_parent_lacks() -> None:
    with pytest.raises(InvalidArgumentError, match="'nag' is not a value of optimizer"):
        tune(
            conditional_objective,
            {
                "optimizer": search.categorical(["sgd", "adam"]),
                "momentum": search.double(0.0, 0.9).when("optimizer", "nag"),
            },
            verbose=False,
        )


def test_tune_refuses_the_objective_metric_as_a_constraint() -> None:
    with pytest.raises(InvalidArgumentError, match="is the objective metric"):
        tune(
            conditional_objective,
            {"lr": search.double(0.01, 0.1)},
            objective_metric_name="loss",
            constraints=["loss"],
            verbose=False,
        )
