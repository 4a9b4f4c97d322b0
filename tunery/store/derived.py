"""Values the store derives from the documents it is given: a trial's objective value.

Kernel module used by :mod:`tunery.store.sql` on every trial write that carries an observation
and by the ``0002`` migration's backfill, so ``trials.objective_value`` always agrees with the
``observation`` document: the objective metric's value as its metric strategy selects it
(Katib's rule), None when the metric is missing or not a finite number, and None when the
experiment has constraints (``objective.constraints``, a tunery extension) that the trial does
not meet, so an infeasible trial is never ranked, hence never the best.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunery.trials import UNAVAILABLE, MetricStrategy, MetricSummary, is_feasible


@dataclass(frozen=True)
class ObjectiveRule:
    """Which metric is the objective, how its value is selected, and which way is better."""

    metric_name: str
    strategy: MetricStrategy
    maximize: bool
    constraints: tuple[tuple[str, MetricStrategy], ...] = ()
    """Constraint metrics with their strategies (latest unless given)."""

    @classmethod
    def from_spec(cls, document: Mapping[str, Any]) -> ObjectiveRule | None:
        """The rule of an Experiment document (``spec.objective``); None when it has none."""
        objective = ((document or {}).get("spec") or {}).get("objective") or {}
        name = objective.get("objectiveMetricName")
        if not isinstance(name, str) or not name:
            return None
        maximize = objective.get("type") == "maximize"
        strategy = MetricStrategy.MAX if maximize else MetricStrategy.MIN
        strategies: dict[str, MetricStrategy] = {}
        for item in objective.get("metricStrategies") or []:
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                strategies[item["name"]] = MetricStrategy(item["value"])
        strategy = strategies.get(name, strategy)
        constraints = tuple(
            (c, strategies.get(c, MetricStrategy.LATEST))
            for c in objective.get("constraints") or []
            if isinstance(c, str)
        )
        return cls(name, strategy, maximize, constraints)

    def value(self, observation: Mapping[str, Any] | None) -> float | None:
        """The objective value in a trial's ``observation`` document (None when infeasible)."""
        value = metric_value(observation, self.metric_name, self.strategy)
        if value is None or not self.feasible(observation):
            return None
        return value

    def feasible(self, observation: Mapping[str, Any] | None) -> bool:
        """Whether every constraint metric is reported and <= 0 (True without constraints)."""
        return is_feasible(metric_value(observation, c, s) for c, s in self.constraints)


def metric_value(
    observation: Mapping[str, Any] | None, name: str, strategy: MetricStrategy
) -> float | None:
    """A metric's value in an ``observation`` document as ``strategy`` selects it."""
    for metric in (observation or {}).get("metrics") or []:
        if metric.get("name") == name:
            summary = MetricSummary(
                metric["name"],
                str(metric.get("min", UNAVAILABLE)),
                str(metric.get("max", UNAVAILABLE)),
                str(metric.get("latest", UNAVAILABLE)),
            )
            return summary.select_numeric(strategy)
    return None
