"""tunery.sdk.progress: the plain lines of `tunery run` agree with its best-trial summary."""

from __future__ import annotations

import pytest

from tunery.sdk.progress import ProgressView
from tunery.store.base import TrialRecord
from tunery.trials import MetricStrategy, Objective, ObjectiveType, TrialCondition


def _trial() -> TrialRecord:
    return TrialRecord(
        name="t1",
        experiment_name="e",
        assignment={"lr": "0.1"},
        condition=TrialCondition.SUCCEEDED,
        reason="TrialSucceeded",
        message="",
        observation={
            "metrics": [
                {"name": "loss", "min": "0.25", "max": "2.0", "latest": "0.5"},
                {"name": "accuracy", "min": "0.4", "max": "0.9", "latest": "0.8"},
            ]
        },
    )


@pytest.mark.parametrize(
    ("objective", "shown"),
    [
        # Katib's default strategy follows the objective's direction for every metric
        (Objective(ObjectiveType.MINIMIZE, "loss", None, ("accuracy",)), "loss=0.25 accuracy=0.4"),
        (Objective(ObjectiveType.MAXIMIZE, "accuracy", None, ("loss",)), "loss=2.0 accuracy=0.9"),
        (
            Objective(
                ObjectiveType.MINIMIZE,
                "loss",
                None,
                ("accuracy",),
                {"loss": MetricStrategy.LATEST, "accuracy": MetricStrategy.MAX},
            ),
            "loss=0.5 accuracy=0.9",
        ),
        (None, "loss=0.5 accuracy=0.8"),
    ],
)
def test_a_finished_trials_line_shows_metrics_as_the_strategies_select_them(
    objective: Objective | None, shown: str
) -> None:
    line = ProgressView("e", objective=objective)._line(_trial())
    assert line == f"t1 Succeeded: {shown} [lr=0.1]"
