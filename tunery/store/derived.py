"""Values the store derives from the documents it is given: a trial's objective value.

Kernel module used by :mod:`tunery.store.sql` on every trial write that carries an observation
and by the ``0002`` migration's backfill, so ``trials.objective_value`` always agrees with the
``observation`` document: the objective metric's value as its metric strategy selects it
(Katib's rule), None when the metric is missing or not a finite number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunery.trials import UNAVAILABLE, MetricStrategy, MetricSummary


@dataclass(frozen=True)
class ObjectiveRule:
    """Which metric is the objective, how its value is selected, and which way is better."""

    metric_name: str
    strategy: MetricStrategy
    maximize: bool

    @classmethod
    def from_spec(cls, document: Mapping[str, Any]) -> ObjectiveRule | None:
        """The rule of an Experiment document (``spec.objective``); None when it has none."""
        objective = ((document or {}).get("spec") or {}).get("objective") or {}
        name = objective.get("objectiveMetricName")
        if not isinstance(name, str) or not name:
            return None
        maximize = objective.get("type") == "maximize"
        strategy = MetricStrategy.MAX if maximize else MetricStrategy.MIN
        for item in objective.get("metricStrategies") or []:
            if isinstance(item, Mapping) and item.get("name") == name:
                strategy = MetricStrategy(item["value"])
        return cls(name, strategy, maximize)

    def value(self, observation: Mapping[str, Any] | None) -> float | None:
        """The objective value in a trial's ``observation`` document."""
        for metric in (observation or {}).get("metrics") or []:
            if metric.get("name") == self.metric_name:
                summary = MetricSummary(
                    metric["name"],
                    str(metric.get("min", UNAVAILABLE)),
                    str(metric.get("max", UNAVAILABLE)),
                    str(metric.get("latest", UNAVAILABLE)),
                )
                return summary.select_numeric(self.strategy)
        return None
