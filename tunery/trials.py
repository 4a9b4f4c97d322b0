"""Trial, observation, condition and metric-strategy model, shared by every package.

Kernel module: imports nothing from the rest of tunery except ``tunery.space``. The store
persists these values, the collector produces :class:`Observation` rows, the controller moves
trials through :class:`TrialCondition` and summarises metrics with :func:`summarize_metrics`
exactly as Katib's trial controller does (min/max/latest, "unavailable" when absent).
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tunery.space import Assignment

UNAVAILABLE = "unavailable"
"""Katib's value for a metric that was never reported."""

ZERO_TIME = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
"""Katib's timestamp for a metric line without one (Go's zero ``time.Time``)."""


class ObjectiveType(enum.StrEnum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


class MetricStrategy(enum.StrEnum):
    MIN = "min"
    MAX = "max"
    LATEST = "latest"


class TrialCondition(enum.StrEnum):
    """Katib's trial condition types; the last one set is the trial's state."""

    CREATED = "Created"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    KILLED = "Killed"
    FAILED = "Failed"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    EARLY_STOPPED = "EarlyStopped"

    @property
    def is_terminal(self) -> bool:
        return self not in (TrialCondition.CREATED, TrialCondition.RUNNING)

    @property
    def is_active(self) -> bool:
        return not self.is_terminal


TRIAL_REASONS: Mapping[TrialCondition, str] = {
    TrialCondition.CREATED: "TrialCreated",
    TrialCondition.RUNNING: "TrialRunning",
    TrialCondition.SUCCEEDED: "TrialSucceeded",
    TrialCondition.KILLED: "TrialKilled",
    TrialCondition.FAILED: "TrialFailed",
    TrialCondition.METRICS_UNAVAILABLE: "MetricsUnavailable",
    TrialCondition.EARLY_STOPPED: "TrialEarlyStopped",
}
"""Katib's default reason per condition."""


@dataclass(frozen=True)
class Objective:
    """What an experiment optimises. ``strategies`` holds every metric's strategy (defaulted)."""

    type: ObjectiveType
    metric_name: str
    goal: float | None = None
    additional_metric_names: tuple[str, ...] = ()
    strategies: Mapping[str, MetricStrategy] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    """Metrics that are constraints (a tunery extension): a trial is feasible when each is
    reported, finite and <= 0. They are also among ``additional_metric_names``."""

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (self.metric_name, *self.additional_metric_names)

    def strategy(self, metric_name: str) -> MetricStrategy:
        default = MetricStrategy.MIN if self.type is ObjectiveType.MINIMIZE else MetricStrategy.MAX
        return self.strategies.get(metric_name, default)

    def is_better(self, candidate: float, incumbent: float | None) -> bool:
        """Strictly better in the objective's direction; NaN is never better."""
        if math.isnan(candidate):
            return False
        if incumbent is None or math.isnan(incumbent):
            return True
        if self.type is ObjectiveType.MINIMIZE:
            return candidate < incumbent
        return candidate > incumbent

    def constraint_values(self, metric: Callable[[str], float | None]) -> tuple[float, ...]:
        """Each constraint's value from ``metric(name)`` (NaN when unavailable)."""
        out = []
        for name in self.constraints:
            value = metric(name)
            out.append(math.nan if value is None else float(value))
        return tuple(out)

    def goal_reached(self, value: float | None) -> bool:
        if self.goal is None or value is None or math.isnan(value):
            return False
        if self.type is ObjectiveType.MINIMIZE:
            return value <= self.goal
        return value >= self.goal


@dataclass(frozen=True)
class Observation:
    """One reported metric value.

    ``value`` is the text as reported (Katib's column); ``numeric`` its float value, or None
    when it does not parse; ``step`` the explicit step, or the ordinal of this metric's report
    within the trial (0-based) when the trial gave none.
    """

    metric_name: str
    value: str
    step: int
    time: dt.datetime = ZERO_TIME
    numeric: float | None = None

    @staticmethod
    def parse_numeric(value: str) -> float | None:
        try:
            return float(value)
        except ValueError:
            return None

    @classmethod
    def of(
        cls, metric_name: str, value: str | float, step: int, time: dt.datetime = ZERO_TIME
    ) -> Observation:
        text = value if isinstance(value, str) else repr(float(value))
        return cls(metric_name, text, step, time, cls.parse_numeric(text))


@dataclass(frozen=True)
class MetricSummary:
    """Katib's per-metric summary: min, max and latest as the reported strings."""

    name: str
    min: str = UNAVAILABLE
    max: str = UNAVAILABLE
    latest: str = UNAVAILABLE

    def select(self, strategy: MetricStrategy) -> str:
        """The value the strategy picks, falling back to latest as Katib does."""
        chosen = {"min": self.min, "max": self.max, "latest": self.latest}[strategy.value]
        return self.latest if chosen == UNAVAILABLE else chosen

    def select_numeric(self, strategy: MetricStrategy) -> float | None:
        """Float value the strategy picks; None if unavailable, unparsable or NaN/inf."""
        value = Observation.parse_numeric(self.select(strategy))
        if value is None or not math.isfinite(value):
            return None
        return value


def summarize_metrics(
    observations: Iterable[Observation], metric_names: Iterable[str]
) -> dict[str, MetricSummary]:
    """Min/max/latest per metric, as Katib's ``getMetrics``.

    min and max consider finite float-parseable values only and keep the reported strings;
    latest is the value with the greatest (time, step), later reports winning ties.
    """
    names = list(metric_names)
    best: dict[str, tuple[float | None, str, float | None, str]] = {}
    latest: dict[str, tuple[tuple[dt.datetime, int], str]] = {}
    for obs in observations:
        if obs.metric_name not in names:
            continue
        key = (obs.time, obs.step)
        prev = latest.get(obs.metric_name)
        if prev is None or key >= prev[0]:
            latest[obs.metric_name] = (key, obs.value)
        num = obs.numeric
        if num is None or not math.isfinite(num):
            continue
        lo, lo_s, hi, hi_s = best.get(obs.metric_name, (None, UNAVAILABLE, None, UNAVAILABLE))
        if lo is None or num < lo:
            lo, lo_s = num, obs.value
        if hi is None or num > hi:
            hi, hi_s = num, obs.value
        best[obs.metric_name] = (lo, lo_s, hi, hi_s)
    out = {}
    for name in names:
        _, lo_s, _, hi_s = best.get(name, (None, UNAVAILABLE, None, UNAVAILABLE))
        out[name] = MetricSummary(name, lo_s, hi_s, latest.get(name, (None, UNAVAILABLE))[1])
    return out


@dataclass(frozen=True)
class TrialResult:
    """What an algorithm or early stopper knows of a trial: its assignment, state and value.

    ``value`` is the objective chosen by the metric strategy (None when unavailable).
    """

    name: str
    assignment: Assignment
    condition: TrialCondition
    value: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)
    """The trial's labels as the controller sent them (``TrialSpec.labels``), e.g. the ones an
    algorithm such as pbt set on its suggestions; not part of equality."""
    constraint_values: tuple[float, ...] = ()
    """The values of ``Objective.constraints`` in order (NaN when not reported)."""

    @property
    def violation(self) -> float:
        """Total constraint violation: 0 when feasible, inf when a value is missing."""
        return violation(self.constraint_values)

    @property
    def is_feasible(self) -> bool:
        return self.violation == 0.0

    @property
    def is_completed_with_value(self) -> bool:
        return self.condition in (TrialCondition.SUCCEEDED, TrialCondition.EARLY_STOPPED) and (
            self.value is not None
        )

    @property
    def is_pending(self) -> bool:
        return self.condition.is_active


def violation(values: Iterable[float | None]) -> float:
    """Sum of the positive constraint values (<= 0 is feasible); inf when one is missing or
    not finite (an unreported constraint never counts as met)."""
    total = 0.0
    for v in values:
        if v is None or not math.isfinite(v):
            return math.inf
        total += max(0.0, float(v))
    return total


def is_feasible(values: Iterable[float | None]) -> bool:
    """Whether every constraint value is reported, finite and <= 0."""
    return violation(values) == 0.0


@dataclass(frozen=True)
class StopDecision:
    """An early stopper's verdict on a running trial."""

    stop: bool
    reason: str = "TrialEarlyStopped"
    message: str = ""


StopCheck = Callable[[Sequence[Observation]], StopDecision]
"""Called by a collector as metrics arrive, with every objective-metric observation of the
trial so far (in report order). The controller binds it to an early stopper (in-process, or a
gRPC EarlyStopping client), so ``metrics_collector`` never imports ``earlystop``."""
