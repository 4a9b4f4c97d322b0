"""Trial, observation, condition and metric-strategy model, shared by every package.

Kernel module: imports nothing from the rest of tunery except ``tunery.space``. The store
persists these values, the collector produces :class:`Observation` rows, the controller moves
trials through :class:`TrialCondition` and summarises metrics with :func:`summarize_metrics`
exactly as Katib's trial controller does (min/max/latest, "unavailable" when absent).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
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
class ObjectiveTerm:
    """One objective of a multi-objective experiment: a metric, its direction, its goal."""

    metric_name: str
    type: ObjectiveType
    goal: float | None = None

    @property
    def sign(self) -> float:
        """+1 when minimised, -1 when maximised: ``sign * value`` is a loss."""
        return 1.0 if self.type is ObjectiveType.MINIMIZE else -1.0

    def goal_reached(self, value: float | None) -> bool:
        if self.goal is None or value is None or math.isnan(value):
            return False
        if self.type is ObjectiveType.MINIMIZE:
            return value <= self.goal
        return value >= self.goal


@dataclass(frozen=True)
class Objective:
    """What an experiment optimises. ``strategies`` holds every metric's strategy (defaulted).

    ``type``, ``metric_name`` and ``goal`` are Katib's objective. A multi-objective experiment
    (tunery's extension, docs/multi-objective.md) lists its further objectives in
    ``extra_objectives``; their metrics are also among ``additional_metric_names`` so every
    collector and Katib client records them. :attr:`terms` is every objective, Katib's first.
    """

    type: ObjectiveType
    metric_name: str
    goal: float | None = None
    additional_metric_names: tuple[str, ...] = ()
    strategies: Mapping[str, MetricStrategy] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    """Metrics that are constraints (a tunery extension): a trial is feasible when each is
    reported, finite and <= 0. They are also among ``additional_metric_names``."""
    extra_objectives: tuple[ObjectiveTerm, ...] = ()

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (self.metric_name, *self.additional_metric_names)

    @property
    def terms(self) -> tuple[ObjectiveTerm, ...]:
        """Every objective, Katib's ``objectiveMetricName`` first."""
        return (ObjectiveTerm(self.metric_name, self.type, self.goal), *self.extra_objectives)

    @property
    def is_multi(self) -> bool:
        return bool(self.extra_objectives)

    @property
    def objective_metric_names(self) -> tuple[str, ...]:
        """The optimised metrics, in objective order."""
        return tuple(t.metric_name for t in self.terms)

    def strategy(self, metric_name: str) -> MetricStrategy:
        direction = self.type
        for term in self.extra_objectives:
            if term.metric_name == metric_name:
                direction = term.type
        default = MetricStrategy.MIN if direction is ObjectiveType.MINIMIZE else MetricStrategy.MAX
        return self.strategies.get(metric_name, default)

    def losses(self, values: Sequence[float]) -> tuple[float, ...]:
        """Objective values (in :attr:`terms` order) in minimisation form."""
        return tuple(t.sign * float(v) for t, v in zip(self.terms, values, strict=True))

    def goals_reached(self, values: Sequence[float] | None) -> bool:
        """Multi-objective goal: one trial reaches the goal of every objective that has one
        (objectives without a goal do not block); False when no objective has a goal."""
        terms = self.terms
        if values is None or all(t.goal is None for t in terms):
            return False
        return all(t.goal is None or t.goal_reached(v) for t, v in zip(terms, values, strict=True))

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
        """Katib's goal: ``value`` of the (first) objective reaches ``goal``."""
        return self.terms[0].goal_reached(value)


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
    ``values`` (multi-objective experiments only) is every objective's value in
    :attr:`Objective.terms` order, None unless all of them are available and finite.
    """

    name: str
    assignment: Assignment
    condition: TrialCondition
    value: float | None = None
    values: tuple[float, ...] | None = None
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


OBJECTIVES_SETTING = "tunery.io/objectives"
"""The algorithm setting that carries a multi-objective experiment's further objectives over
Katib's gRPC API (docs/multi-objective.md): a JSON list of ``{"name", "type", "goal"?}``, one
per objective after Katib's ``objectiveMetricName``. Their metrics travel as additional metrics
in every trial's observation. A plain Katib request never has it."""


class ObjectivesSettingError(ValueError):
    """The ``tunery.io/objectives`` setting does not parse (the message says what is wrong)."""


def encode_objectives_setting(terms: Sequence[ObjectiveTerm]) -> str:
    """The :data:`OBJECTIVES_SETTING` value for the objectives after the first."""
    return json.dumps(
        [
            {"name": t.metric_name, "type": t.type.value}
            | ({} if t.goal is None else {"goal": t.goal})
            for t in terms
        ],
        separators=(",", ":"),
    )


def decode_objectives_setting(text: str) -> tuple[ObjectiveTerm, ...]:
    """The objectives of an :data:`OBJECTIVES_SETTING` value.

    Raises:
        ObjectivesSettingError: not a non-empty JSON list of objects with a ``name`` string,
            a ``type`` of minimize/maximize and an optional numeric ``goal``; or a name twice.
    """
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ObjectivesSettingError(f"{OBJECTIVES_SETTING} is not JSON: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise ObjectivesSettingError(f"{OBJECTIVES_SETTING} must be a non-empty JSON list")
    out: list[ObjectiveTerm] = []
    for i, item in enumerate(raw):
        where = f"{OBJECTIVES_SETTING}[{i}]"
        if not isinstance(item, dict) or set(item) - {"name", "type", "goal"}:
            raise ObjectivesSettingError(f"{where} must be an object with name, type, goal")
        name, otype, goal = item.get("name"), item.get("type"), item.get("goal")
        if not isinstance(name, str) or not name:
            raise ObjectivesSettingError(f"{where}.name must be a non-empty string")
        if otype not in ("minimize", "maximize"):
            raise ObjectivesSettingError(f"{where}.type must be minimize or maximize")
        if goal is not None and (isinstance(goal, bool) or not isinstance(goal, int | float)):
            raise ObjectivesSettingError(f"{where}.goal must be a number")
        if any(t.metric_name == name for t in out):
            raise ObjectivesSettingError(f"{where}.name {name!r} is listed twice")
        out.append(ObjectiveTerm(name, ObjectiveType(otype), None if goal is None else goal))
    return tuple(out)
