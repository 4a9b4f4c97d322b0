"""Median stopping, as in Google Vizier (Golovin et al., KDD 2017): the ``medianstop`` stopper.

Registered in ``earlystop.REGISTRY``; called through ``earlystop.inprocess`` (controller and
collector, on every reported metric) and ``earlystop.service`` (Katib's wire form).

The rule
    Number a trial's objective reports 1, 2, 3, ... in step order (``Observation.step``;
    equal steps keep report order): the s-th report is *step s*, which is how Katib's
    ``start_step`` counts too. The *running average* of a completed trial at step s is the
    mean of its first s reports. A running trial that has made s >= ``start_step`` reports is
    stopped when its best value so far is strictly worse (greater when minimising, less when
    maximising) than the true median (:func:`statistics.median`) of the running averages at
    step s of the completed trials that reached step s. While fewer than
    ``min_trials_required`` completed trials reached step s, nothing is decided at step s:
    a trial is never compared with trials at a step they did not report, so curves of
    different lengths cannot cause unfair stops. "Completed" means Succeeded; callers choose
    which trials they pass to :meth:`MedianStop.prepare`.

Non-finite values and missing steps (decided on purpose)
    - A report whose value is NaN, +-inf or not a number (Katib's ``unavailable``) still
      counts as a step but carries no value: it is left out of running averages and of the
      best value.
    - A completed trial's running average at step s is the mean of the finite values among
      its first s reports; when there is none, the trial has no average at step s and does
      not count towards ``min_trials_required`` there.
    - A running trial whose first s >= ``start_step`` reports hold no finite value at all
      (diverged from the start) is stopped as soon as a median exists at step s.
    - A running trial that has made more reports than every completed trial has no median
      to be compared with and continues; it was judged at every earlier step.
    - Explicit step numbers only order the reports: gaps (steps 1, 2, 5) do not matter, and
      duplicated steps are separate reports.

Costs: :meth:`MedianStop.prepare` is O(sum of curve lengths + S * T log T) for T completed
trials of at most S steps, once per change of the completed set; a decision is O(1) given a
:class:`~earlystop.base.RunningCurve`, which callers extend in O(1) per observation.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from earlystop.base import (
    Comparison,
    EarlyStopper,
    EarlyStoppingSettings,
    InvalidSettingsError,
    RunningCurve,
    StopPolicy,
    StopRule,
    finite_value,
    require_int,
)
from tunery.trials import Objective, ObjectiveType, Observation, StopDecision

REASON = "TrialEarlyStopped"


@dataclass(frozen=True)
class MedianStopSettings(EarlyStoppingSettings):
    """``min_trials_required`` completed trials must reach a step before it decides anything;
    no trial is judged before its ``start_step``-th report. Katib's defaults and messages."""

    min_trials_required: int = 3
    start_step: int = 4

    def __post_init__(self) -> None:
        if require_int("min_trials_required", self.min_trials_required) <= 0:
            raise InvalidSettingsError("min_trials_required must be greater than zero (>0)")
        if require_int("start_step", self.start_step) < 1:
            raise InvalidSettingsError("start_step must be greater or equal than one (>=1)")


def objective_curve(observations: Iterable[Observation], metric_name: str) -> list[float | None]:
    """The values of ``metric_name`` in step order (stable), None where not finite."""
    reports = [o for o in observations if o.metric_name == metric_name]
    reports.sort(key=lambda o: o.step)
    return [finite_value(o) for o in reports]


def running_averages(values: Sequence[float | None]) -> list[float | None]:
    """Entry s-1 is the mean of the finite values among ``values[:s]`` (None if none)."""
    out: list[float | None] = []
    total = 0.0
    count = 0
    for value in values:
        if value is not None:
            total += value
            count += 1
        out.append(total / count if count else None)
    return out


@dataclass(frozen=True)
class StepMedian:
    """The median of ``trials`` completed trials' running averages at ``step``."""

    step: int
    median: float
    trials: int


def _fmt(value: float) -> str:
    return format(value, ".10g")


class MedianStopPolicy(StopPolicy):
    """Per-step medians of one snapshot of the completed trials (see the module docstring)."""

    def __init__(
        self,
        objective: Objective,
        settings: MedianStopSettings,
        medians: Sequence[float | None],
        counts: Sequence[int],
    ) -> None:
        self.objective = objective
        self.settings = settings
        self._medians = tuple(medians)
        self._counts = tuple(counts)
        self._minimize = objective.type is ObjectiveType.MINIMIZE

    @property
    def max_step(self) -> int:
        """The longest completed curve (no median exists beyond it)."""
        return len(self._counts)

    def median_at(self, step: int) -> StepMedian | None:
        """The median at ``step`` whatever the number of trials; None where no completed
        trial has a running average (or ``step`` is before ``start_step``)."""
        if step < 1 or step > len(self._counts):
            return None
        median = self._medians[step - 1]
        if median is None:
            return None
        return StepMedian(step, median, self._counts[step - 1])

    def threshold(self, step: int) -> StepMedian | None:
        """The median a running trial is held to at ``step``; None while undecided there."""
        found = self.median_at(step)
        if found is None or found.trials < self.settings.min_trials_required:
            return None
        return found

    def decide_at(self, step: int, best: float | None) -> StopDecision:
        """Stop or continue a trial whose best finite value after ``step`` reports is
        ``best`` (None: no finite value yet)."""
        settings = self.settings
        metric = self.objective.metric_name
        if step < settings.start_step:
            return StopDecision(
                False, message=f"step {step} is before start_step {settings.start_step}"
            )
        threshold = self.threshold(step)
        if threshold is None:
            found = self.median_at(step)
            have = found.trials if found is not None else 0
            return StopDecision(
                False,
                message=f"{have} completed trials reached step {step} with a {metric} value; "
                f"min_trials_required is {settings.min_trials_required}",
            )
        median, trials = _fmt(threshold.median), threshold.trials
        if best is None:
            return StopDecision(
                True,
                REASON,
                f"no finite {metric} in {step} reports, while the median of {trials} "
                f"completed trials' running averages at step {step} is {median}",
            )
        worse = best > threshold.median if self._minimize else best < threshold.median
        verdict = "worse" if worse else "not worse"
        return StopDecision(
            worse,
            REASON,
            f"best {metric} {_fmt(best)} at step {step} is {verdict} than the median {median} "
            f"of {trials} completed trials' running averages",
        )

    def decide_curve(self, curve: RunningCurve) -> StopDecision:
        return self.decide_at(curve.steps, curve.best)

    def rules(self) -> list[StopRule]:
        """One rule at ``start_step``: the only threshold Katib's wire form can carry."""
        start = self.settings.start_step
        threshold = self.threshold(start)
        if threshold is None:
            return []
        comparison = Comparison.GREATER if self._minimize else Comparison.LESS
        return [StopRule(self.objective.metric_name, threshold.median, comparison, start)]


class MedianStop(EarlyStopper):
    """Katib's ``medianstop``, with the true median at every step from ``start_step``."""

    name = "medianstop"
    settings_type = MedianStopSettings
    settings: MedianStopSettings

    def prepare(
        self, objective: Objective, completed: Iterable[Sequence[Observation]]
    ) -> MedianStopPolicy:
        start = self.settings.start_step
        columns: list[list[float]] = []
        for observations in completed:
            averages = running_averages(objective_curve(observations, objective.metric_name))
            while len(columns) < len(averages):
                columns.append([])
            for column, average in zip(columns, averages, strict=False):
                if average is not None:
                    column.append(average)
        medians = [
            statistics.median(column) if column and step >= start else None
            for step, column in enumerate(columns, start=1)
        ]
        return MedianStopPolicy(
            objective, self.settings, medians, [len(column) for column in columns]
        )
