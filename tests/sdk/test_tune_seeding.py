"""tune(enqueue=..., warm_start=...) and Client.enqueue / Client.add_trials, end to end on this
machine (trials are real processes, the store SQLite in a temp folder)."""

from __future__ import annotations

import pytest

from tunery import Client, search, tune
from tunery.sdk import InvalidArgumentError, NotFoundError

pytestmark = pytest.mark.usefixtures("isolated_cwd")

QUIET = {"verbose": False}


def parabola(p: dict) -> float:
    return float((p["x"] - 4) ** 2)


def test_tune_runs_enqueued_points_first_and_uses_warm_start_results() -> None:
    with pytest.warns(UserWarning, match=r"skipped warm_start\[1\]: parameters\.x: 50"):
        result = tune(
            parabola,
            {"x": search.int(0, 10)},
            name="seeded",
            objective_type="minimize",
            algorithm_name="random",
            max_trial_count=3,
            parallel_trial_count=1,
            enqueue=[{"x": 3}, {"x": "7"}],
            warm_start=[{"parameters": {"x": 4}, "value": 0.0}, ({"x": 50}, 1.0)],
            **QUIET,
        )
    warm = [t for t in result.trials if t.is_warm_start]
    run = [t for t in result.trials if not t.is_warm_start]
    assert [t.parameters for t in warm] == [{"x": 4}]
    assert warm[0].condition == "Succeeded" and warm[0].log_path is None
    assert len(run) == 3  # max_trial_count counts the trials run, not the warm-start ones
    assert [t.parameters["x"] for t in run][:2] == [3, 7]
    assert [t.value for t in run][:2] == [1.0, 9.0]
    assert all(t.condition == "Succeeded" for t in run)
    assert result.best_parameters == {"x": 4} and result.best_value == 0.0
    # calling tune again with the same seeds (a resume) adds nothing twice
    with Client() as client:
        assert client.add_trials("seeded", [({"x": 4}, 0.0)]) == []
        assert client.enqueue("seeded", [{"x": 3}]) == []
        queued = client.enqueue("seeded", [{"x": 9}])
        assert [t.parameters for t in queued] == [{"x": 9}] and queued[0].condition == "Created"


def test_tune_warm_starts_from_another_experiment() -> None:
    tune(
        parabola,
        {"x": search.int(0, 10)},
        name="first",
        objective_type="minimize",
        algorithm_name="random",
        max_trial_count=2,
        parallel_trial_count=2,
        enqueue=[{"x": 0}, {"x": 10}],
        **QUIET,
    )
    with pytest.warns(UserWarning, match=r"experiment 'first', trial '.*': parameters\.x: '10'"):
        result = tune(
            parabola,
            {"x": search.int(0, 8)},  # x = 10 no longer fits
            name="second",
            objective_type="minimize",
            algorithm_name="random",
            max_trial_count=1,
            warm_start="first",
            **QUIET,
        )
    warm = [t for t in result.trials if t.is_warm_start]
    assert [(t.parameters, t.value) for t in warm] == [({"x": 0}, 16.0)]
    assert "experiment 'first'" in warm[0].message
    assert len(result.trials) == 2


def test_bad_seeds_are_refused_before_anything_is_stored() -> None:
    with pytest.raises(InvalidArgumentError, match=r"enqueue\[0\]\.x: 11: 11 is outside"):
        tune(parabola, {"x": search.int(0, 10)}, name="bad", enqueue=[{"x": 11}], **QUIET)
    with pytest.raises(InvalidArgumentError, match=r"warm_start\[0\]: expected"):
        tune(parabola, {"x": search.int(0, 10)}, name="bad", warm_start=[3], **QUIET)
    with Client() as client:
        with pytest.raises(NotFoundError):
            client.get_experiment("bad")
        with pytest.raises(NotFoundError):
            client.enqueue("bad", [{"x": 1}])


def test_points_beyond_the_budget_are_announced_and_not_run() -> None:
    with pytest.warns(UserWarning, match="2 points enqueued but max_trial_count is 1"):
        result = tune(
            parabola,
            {"x": search.int(0, 10)},
            name="over",
            objective_type="minimize",
            max_trial_count=1,
            enqueue=[{"x": 1}, {"x": 2}],
            **QUIET,
        )
    assert [(t.parameters["x"], t.condition) for t in result.trials] == [
        (1, "Succeeded"),
        (2, "Killed"),
    ]
