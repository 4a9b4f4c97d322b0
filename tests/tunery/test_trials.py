"""tunery.trials: Katib's metric summaries, strategies, goal checks and conditions."""

from __future__ import annotations

import datetime as dt
import math

from tunery.trials import (
    UNAVAILABLE,
    MetricStrategy,
    Objective,
    ObjectiveType,
    Observation,
    TrialCondition,
    summarize_metrics,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def obs(name: str, value: str, step: int, seconds: int = 0) -> Observation:
    return Observation.of(name, value, step, T0 + dt.timedelta(seconds=seconds))


def test_summary_tracks_min_max_latest_as_reported_strings() -> None:
    logs = [obs("loss", "0.50", 0, 1), obs("loss", "1e-1", 1, 2), obs("loss", "0.3", 2, 3)]
    s = summarize_metrics(logs, ["loss", "acc"])["loss"]
    assert (s.min, s.max, s.latest) == ("1e-1", "0.50", "0.3")
    missing = summarize_metrics(logs, ["loss", "acc"])["acc"]
    assert (missing.min, missing.max, missing.latest) == (UNAVAILABLE,) * 3


def test_non_numeric_and_nan_never_become_min_or_max() -> None:
    logs = [obs("loss", "abc", 0, 1), obs("loss", "nan", 1, 2), obs("loss", "0.7", 2, 3)]
    s = summarize_metrics(logs, ["loss"])["loss"]
    assert (s.min, s.max) == ("0.7", "0.7")
    only_text = summarize_metrics([obs("loss", "abc", 0)], ["loss"])["loss"]
    assert only_text.min == UNAVAILABLE and only_text.latest == "abc"
    # min falls back to latest, which is not a number: no objective value
    assert only_text.select(MetricStrategy.MIN) == "abc"
    assert only_text.select_numeric(MetricStrategy.MIN) is None


def test_latest_uses_time_then_report_order() -> None:
    zero = [Observation.of("acc", "0.1", 0), Observation.of("acc", "0.2", 1)]
    assert summarize_metrics(zero, ["acc"])["acc"].latest == "0.2"
    out_of_order = [obs("acc", "0.9", 0, 10), obs("acc", "0.1", 1, 5)]
    assert summarize_metrics(out_of_order, ["acc"])["acc"].latest == "0.9"


def test_objective_direction_goal_and_default_strategies() -> None:
    minimize = Objective(
        ObjectiveType.MINIMIZE, "loss", goal=0.1, additional_metric_names=("acc",)
    )
    assert minimize.strategy("loss") is MetricStrategy.MIN
    assert minimize.strategy("acc") is MetricStrategy.MIN  # Katib: objective direction
    assert minimize.is_better(0.2, 0.3) and not minimize.is_better(0.3, 0.2)
    assert not minimize.is_better(math.nan, 1.0) and minimize.is_better(1.0, None)
    assert minimize.goal_reached(0.1) and not minimize.goal_reached(0.11)
    maximize = Objective(
        ObjectiveType.MAXIMIZE, "acc", goal=0.9, strategies={"acc": MetricStrategy.LATEST}
    )
    assert maximize.strategy("acc") is MetricStrategy.LATEST
    assert maximize.goal_reached(0.95) and not maximize.goal_reached(math.nan)
    assert Objective(ObjectiveType.MAXIMIZE, "acc").goal_reached(1.0) is False


def test_terminal_conditions() -> None:
    terminal = {c for c in TrialCondition if c.is_terminal}
    assert terminal == {
        TrialCondition.SUCCEEDED,
        TrialCondition.FAILED,
        TrialCondition.KILLED,
        TrialCondition.EARLY_STOPPED,
        TrialCondition.METRICS_UNAVAILABLE,
    }
