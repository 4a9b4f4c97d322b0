"""tune() with multi-fidelity: asha stopping the trials of a suggestion algorithm, and
hyperband giving the objective its resource parameter, both in-process through the local
controller."""

from __future__ import annotations

import pytest

from tunery import Client, search, tune

pytestmark = [pytest.mark.usefixtures("isolated_cwd"), pytest.mark.slow]

QUIET = {"verbose": False}


def staged(p: dict) -> None:
    import time

    from tunery import report_metrics

    for step in range(12):
        report_metrics({"loss": p["x"] * (20 - step)}, step=step)
        time.sleep(0.05 if p["x"] < 1 else 0.25)


def test_asha_stops_a_trial_at_its_first_rung() -> None:
    """x=0.1 and 0.2 finish first (grid order); at the rung of 2 reports their best losses are
    1.9 and 3.8, the best half is cut at 2.85, and x=9 (171) is stopped there."""
    result = tune(
        staged,
        {"x": search.discrete([0.1, 0.2, 9.0])},
        name="asha-sdk",
        objective_metric_name="loss",
        objective_type="minimize",
        algorithm_name="grid",
        early_stopping={
            "algorithm_name": "asha",
            "algorithm_settings": {
                "min_resource": 2,
                "reduction_factor": 2,
                "min_trials_required": 2,  # x=0.2 is not judged against x=0.1 alone
            },
        },
        max_trial_count=3,
        parallel_trial_count=1,
        **QUIET,
    )
    by_x = {t.parameters["x"]: t for t in result.trials}
    assert by_x[0.1].condition == by_x[0.2].condition == "Succeeded"
    assert by_x[9.0].condition == "EarlyStopped"
    with Client() as client:
        steps = [o.step for o in client.get_trial_metrics(by_x[9.0].name)]
    assert max(steps) < 11
    assert result.best_parameters == {"x": 0.1}


def by_epochs(p: dict) -> float:
    return (p["lr"] - 0.02) ** 2 + 1.0 / p["epochs"]


def test_hyperband_through_tune() -> None:
    result = tune(
        by_epochs,
        {"lr": search.double(0.01, 0.05), "epochs": search.int(1, 1)},
        name="hyperband-sdk",
        objective_metric_name="loss",
        objective_type="minimize",
        algorithm_name="hyperband",
        algorithm_settings={"resource_name": "epochs", "r_l": 4, "eta": 2},
        max_trial_count=30,
        parallel_trial_count=4,
        **QUIET,
    )
    assert len(result.trials) == 15
    epochs = sorted(t.parameters["epochs"] for t in result.trials)
    assert epochs == [1] * 4 + [2] * 5 + [4] * 6
    assert result.best_parameters["epochs"] == 4
