"""Katib's early-stopping rules, enforced as metrics arrive (the sidecar's stop check).

Used by :mod:`metrics_collector.sidecar` as the ``stop_check`` of its collector. The rules
come from an EarlyStopping service (``GetEarlyStoppingRules``; medianstop gives one rule on
the objective) and reach the sidecar as ``-stop-rule name;value;comparison;startStep``.
(The local controller instead binds the in-process stopper; this module never imports it.)

Katib's sidecar semantics, kept because the rules are computed for them:

- For the objective metric the value compared is the best so far (running max when
  maximising, min when minimising); for other metrics the reported value.
- A rule with ``startStep > 0`` is evaluated once, at the ``startStep``-th report of its
  metric (medianstop compares a trial at that step); with 0, at every report.
- A satisfied rule is done; the trial stops when every rule is satisfied.
- Comparisons: EQUAL ``==``, LESS ``<``, GREATER ``>`` (metric against rule value). NaN never
  satisfies a rule and never becomes the best.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from metrics_collector.errors import InvalidStopRuleError
from tunery.api import api_pb2
from tunery.trials import Objective, ObjectiveType, Observation, StopDecision


class Comparison(enum.StrEnum):
    """Katib's ``ComparisonType`` names."""

    EQUAL = "EQUAL"
    LESS = "LESS"
    GREATER = "GREATER"

    def holds(self, metric: float, value: float) -> bool:
        if self is Comparison.EQUAL:
            return metric == value
        if self is Comparison.LESS:
            return metric < value
        return metric > value

    @property
    def symbol(self) -> str:
        return {"EQUAL": "==", "LESS": "<", "GREATER": ">"}[self.value]


@dataclass(frozen=True)
class StopRule:
    """One early-stopping rule: stop when ``name`` compares to ``value`` at ``start_step``."""

    name: str
    value: float
    comparison: Comparison
    start_step: int = 0

    @classmethod
    def parse(cls, text: str) -> StopRule:
        """Parse Katib's sidecar form ``name;value;comparison;startStep``.

        ``comparison`` is a ``ComparisonType`` name (``LESS``), case-insensitive.

        Raises:
            InvalidStopRuleError: wrong number of fields, or a field that does not parse.
        """
        parts = text.split(";")
        if len(parts) != 4:
            raise InvalidStopRuleError(
                f"stop rule {text!r} must be name;value;comparison;startStep"
            )
        name, value, comparison, start_step = (p.strip() for p in parts)
        if not name:
            raise InvalidStopRuleError(f"stop rule {text!r} has no metric name")
        try:
            number = float(value)
        except ValueError:
            raise InvalidStopRuleError(
                f"stop rule {text!r}: value {value!r} is not a number"
            ) from None
        try:
            kind = Comparison(comparison.upper())
        except ValueError:
            raise InvalidStopRuleError(
                f"stop rule {text!r}: comparison {comparison!r} is not EQUAL, LESS or GREATER"
            ) from None
        try:
            step = int(start_step or "0")
        except ValueError:
            raise InvalidStopRuleError(
                f"stop rule {text!r}: startStep {start_step!r} is not an integer"
            ) from None
        return cls(name, number, kind, max(step, 0))

    @classmethod
    def from_proto(cls, rule: api_pb2.EarlyStoppingRule) -> StopRule:
        """From the EarlyStopping service's ``EarlyStoppingRule``.

        Raises:
            InvalidStopRuleError: unknown comparison or a value that is not a number.
        """
        name = api_pb2.ComparisonType.Name(rule.comparison)
        return cls.parse(f"{rule.name};{rule.value};{name};{rule.start_step}")

    def __str__(self) -> str:
        return f"{self.name};{self.value!r};{self.comparison.value};{self.start_step}"


class KatibStopRules:
    """A :data:`tunery.trials.StopCheck` that applies rules with Katib's sidecar semantics.

    Stateful: each call looks only at the observations it has not seen (the collector passes
    all observations so far, in report order).
    """

    def __init__(self, rules: Iterable[StopRule], objective: Objective) -> None:
        self.rules = tuple(rules)
        self.objective = objective
        self._open = list(self.rules)
        self._countdown = {i: r.start_step for i, r in enumerate(self.rules) if r.start_step > 0}
        self._index = {id(r): i for i, r in enumerate(self.rules)}
        self._seen = 0
        self._best: float | None = None
        self._fired: list[str] = []

    @property
    def metric_names(self) -> frozenset[str]:
        return frozenset(r.name for r in self.rules)

    def __call__(self, observations: Sequence[Observation]) -> StopDecision:
        for obs in observations[self._seen :]:
            self._observe(obs)
        self._seen = len(observations)
        if self.rules and not self._open:
            return StopDecision(
                stop=True,
                reason="TrialEarlyStopped",
                message="Trial is early stopped: " + "; ".join(self._fired),
            )
        return StopDecision(stop=False)

    def _observe(self, obs: Observation) -> None:
        if not self._open:
            return
        value = obs.numeric
        if obs.metric_name == self.objective.metric_name and value is not None:
            if self.objective.is_better(value, self._best):
                self._best = value
            value = self._best
        still_open = []
        for rule in self._open:
            if rule.name != obs.metric_name:
                still_open.append(rule)
                continue
            index = self._index[id(rule)]
            if index in self._countdown:
                self._countdown[index] -= 1
                if self._countdown[index] != 0:  # Katib: evaluated at exactly startStep
                    still_open.append(rule)
                    continue
            if (
                value is not None
                and not math.isnan(value)
                and rule.comparison.holds(value, rule.value)
            ):
                shown = "best " if obs.metric_name == self.objective.metric_name else ""
                self._fired.append(
                    f"{rule.name} {shown}{value:g} {rule.comparison.symbol} {rule.value:g}"
                    f" at report {obs.step}"
                )
                continue
            still_open.append(rule)
        self._open = still_open


def objective_for(metric_names: Sequence[str], objective_type: ObjectiveType) -> Objective:
    """The objective of a sidecar's ``-m`` list: the first name, the rest additional."""
    return Objective(objective_type, metric_names[0], None, tuple(metric_names[1:]))
