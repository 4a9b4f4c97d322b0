"""tune(objectives=...) end to end on this machine: a multi-objective experiment through the
local controller, the in-process suggestion service (the ``tunery.io/objectives`` setting on
the wire) and the store; the result's Pareto front, the status extension and the errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tunery import Client, search, tune
from tunery.cli import main
from tunery.pareto import dominates
from tunery.sdk import InvalidArgumentError

pytestmark = pytest.mark.usefixtures("isolated_cwd")


def two_objectives(p: dict) -> dict:
    x = p["x"]
    return {"loss": x * x, "latency_ms": (x - 2) ** 2 + (p["opt"] == "b")}


def test_tune_returns_the_pareto_front() -> None:
    result = tune(
        two_objectives,
        {"x": search.double(-1.0, 3.0), "opt": search.categorical(["a", "b"])},
        name="mo",
        objectives={"loss": "minimize", "latency_ms": "minimize"},
        algorithm_settings={"n_startup_trials": 3},
        seed=3,
        max_trial_count=8,
        parallel_trial_count=2,
        verbose=False,
    )
    assert result.condition == "Succeeded"
    done = [t for t in result.trials if "loss" in t.metrics and "latency_ms" in t.metrics]
    assert len(done) == 8
    front = result.pareto_front
    assert front, "a multi-objective result lists its Pareto front"
    key = ("loss", "latency_ms")
    for t in front:  # nothing dominates a front member; everything else is dominated
        assert not any(
            dominates([o.metrics[k] for k in key], [t.metrics[k] for k in key]) for o in done
        )
    for t in done:
        if t not in front:
            assert any(
                dominates([f.metrics[k] for k in key], [t.metrics[k] for k in key]) for f in front
            )
    losses = [t.metrics["loss"] for t in front]
    assert losses == sorted(losses)
    assert result.best_value == min(t.metrics["loss"] for t in done)  # Katib's: first objective
    status = Client("local").get_experiment("mo")["status"]
    assert status["paretoFrontSize"] == len(front)
    assert {e["trialName"] for e in status["paretoFront"]} == {t.name for t in front}

    # `tunery best` lists the same front, as text and as JSON
    runner = CliRunner()
    text = runner.invoke(main, ["best", "mo"])
    assert text.exit_code == 0, text.output
    assert f"Pareto front of mo: {len(front)} trial(s)" in text.output
    assert "loss (min)" in text.output and "latency_ms (min)" in text.output
    assert all(t.name in text.output for t in front)
    data = json.loads(runner.invoke(main, ["best", "mo", "-o", "json"]).output)
    assert [e["trialName"] for e in data["paretoFront"]] == [t.name for t in front]
    assert data["paretoFront"][0]["values"]["loss"] == pytest.approx(front[0].metrics["loss"])


def test_bad_objectives_are_refused() -> None:
    space = {"x": search.double(0.0, 1.0)}
    with pytest.raises(InvalidArgumentError, match="at least two"):
        tune(two_objectives, space, objectives={"loss": "minimize"}, verbose=False)
    with pytest.raises(InvalidArgumentError, match="'minimize' or 'maximize'"):
        tune(
            two_objectives,
            space,
            objectives={"loss": "minimize", "latency_ms": "min"},
            verbose=False,
        )


def test_a_single_objective_algorithm_refuses_several_objectives() -> None:
    with pytest.raises(Exception, match="multi-objective algorithm"):
        tune(
            two_objectives,
            {"x": search.double(0.0, 1.0)},
            objectives={"loss": "minimize", "latency_ms": "minimize"},
            algorithm_name="tpe",
            verbose=False,
        )
