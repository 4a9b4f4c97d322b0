"""Asynchronous successive halving (ASHA, Li et al., MLSys 2020): the ``asha`` stopper.

Registered in ``earlystop.REGISTRY``; called through ``earlystop.inprocess`` (controller and
collector, on every reported metric) and ``earlystop.service`` (Katib's wire form). It works
with every suggestion algorithm: it only judges running trials' learning curves.

The resource is the metric's step, counted as medianstop counts it: a trial's objective
reports are numbered 1, 2, 3, ... in step order (``Observation.step``; equal steps keep report
order). Rungs sit at ``r_k = min_resource * reduction_factor**k`` reports (k = 0, 1, ...; up
to ``max_resource`` when set). A trial's *rung value* at ``r_k`` is its best finite objective
value among its first ``r_k`` reports.

The rule
    When a running trial makes its ``r_k``-th report (and ``r_k >= grace_period``), it is
    compared with the rung values at ``r_k`` of the reference trials that reached ``r_k``: it
    continues when its rung value is within the best ``1/reduction_factor`` of them (not worse
    than their ``1/reduction_factor`` quantile, linearly interpolated), and is stopped
    otherwise. While fewer than ``min_trials_required`` reference trials reached ``r_k``,
    nothing is decided there. Between rungs a trial always continues: ASHA decides promotions
    at rungs only, so a trial that passed rung k runs to rung k+1 whatever happens meanwhile.
    A trial whose first ``r_k`` reports hold no finite value is stopped at a decided rung.

Reference trials are the finished ones that reported: Succeeded and EarlyStopped trials
(:attr:`Asha.compared_conditions`), so a trial stopped at rung 2 still counts at rungs 0-2,
as ASHA records every trial that reached a rung. Running trials are not references (their
observations are not read by the stop check), which makes this ASHA slightly less aggressive
than the paper's while the first trials run; with one trial at a time it is exactly ASHA.

Wire form: a Katib sidecar stops a trial only when *every* rule it got holds, so one rule per
rung cannot express ASHA. :meth:`AshaPolicy.rules` gives one rule, at the first decided rung
(the cutoff there, GREATER when minimising / LESS when maximising); the in-process form applies
every rung.

Costs: :meth:`Asha.prepare` is O(sum of curve lengths + K * T log T) for T reference trials
and K rungs, once per change of the reference set; a decision is O(1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from earlystop.base import (
    Comparison,
    EarlyStopper,
    EarlyStoppingSettings,
    InvalidSettingsError,
    RunningCurve,
    StopPolicy,
    StopRule,
    require_int,
)
from earlystop.medianstop import objective_curve
from tunery.trials import Objective, ObjectiveType, Observation, StopDecision, TrialCondition

REASON = "TrialEarlyStopped"


@dataclass(frozen=True)
class AshaSettings(EarlyStoppingSettings):
    """``min_resource``: reports at the first rung; ``reduction_factor``: eta (each rung keeps
    the best 1/eta); ``grace_period``: no stop before this many reports; ``max_resource``: the
    last rung (0: no limit); ``min_trials_required``: reference trials a rung needs."""

    min_resource: int = 1
    reduction_factor: int = 3
    grace_period: int = 1
    max_resource: int = 0
    min_trials_required: int = 1

    def __post_init__(self) -> None:
        if require_int("min_resource", self.min_resource) < 1:
            raise InvalidSettingsError(
                f"min_resource must be greater or equal than one (>=1), got {self.min_resource}"
            )
        if require_int("reduction_factor", self.reduction_factor) < 2:
            raise InvalidSettingsError(
                f"reduction_factor must be greater or equal than two (>=2), "
                f"got {self.reduction_factor}"
            )
        if require_int("grace_period", self.grace_period) < 1:
            raise InvalidSettingsError(
                f"grace_period must be greater or equal than one (>=1), got {self.grace_period}"
            )
        if require_int("max_resource", self.max_resource) < 0:
            raise InvalidSettingsError(
                f"max_resource must be zero (no limit) or at least min_resource, "
                f"got {self.max_resource}"
            )
        if 0 < self.max_resource < self.min_resource:
            raise InvalidSettingsError(
                f"max_resource {self.max_resource} must be zero (no limit) or at least "
                f"min_resource {self.min_resource}"
            )
        if require_int("min_trials_required", self.min_trials_required) < 1:
            raise InvalidSettingsError(
                f"min_trials_required must be greater than zero (>0), "
                f"got {self.min_trials_required}"
            )

    def rungs(self, longest: int) -> list[int]:
        """Rung steps up to ``longest`` reports (and ``max_resource`` when set)."""
        limit = min(longest, self.max_resource) if self.max_resource else longest
        out: list[int] = []
        r = self.min_resource
        while r <= limit:
            out.append(r)
            r *= self.reduction_factor
        return out


def prefix_best(values: Sequence[float | None], minimize: bool) -> list[float | None]:
    """Entry s-1 is the best finite value among ``values[:s]`` (None while there is none)."""
    out: list[float | None] = []
    best: float | None = None
    for value in values:
        if value is not None and (best is None or (value < best if minimize else value > best)):
            best = value
        out.append(best)
    return out


@dataclass(frozen=True)
class RungCutoff:
    """The rung at ``step``: ``cutoff`` is the worst value that continues, from ``trials``."""

    step: int
    cutoff: float
    trials: int


def _fmt(value: float) -> str:
    return format(value, ".10g")


class AshaPolicy(StopPolicy):
    """Per-rung cutoffs of one snapshot of the reference trials."""

    def __init__(
        self,
        objective: Objective,
        settings: AshaSettings,
        rungs: dict[int, tuple[float, int]],
    ) -> None:
        self.objective = objective
        self.settings = settings
        self._rungs = dict(rungs)  # step -> (cutoff, references)
        self._minimize = objective.type is ObjectiveType.MINIMIZE

    def cutoff(self, step: int) -> RungCutoff | None:
        """The decided rung at ``step``; None when ``step`` is no rung, is before
        ``grace_period``, or too few reference trials reached it."""
        found = self._rungs.get(step)
        if found is None or step < self.settings.grace_period:
            return None
        if found[1] < self.settings.min_trials_required:
            return None
        return RungCutoff(step, found[0], found[1])

    def decide_at(self, step: int, best: float | None) -> StopDecision:
        """Stop or continue a trial whose best finite value after ``step`` reports is
        ``best`` (None: no finite value yet)."""
        metric = self.objective.metric_name
        rung = self.cutoff(step)
        if rung is None:
            return StopDecision(False, message=f"step {step} is not a decided asha rung")
        eta = self.settings.reduction_factor
        if best is None:
            return StopDecision(
                True,
                REASON,
                f"no finite {metric} in {step} reports at an asha rung of {rung.trials} trials",
            )
        worse = best > rung.cutoff if self._minimize else best < rung.cutoff
        verdict = "outside" if worse else "within"
        return StopDecision(
            worse,
            REASON,
            f"best {metric} {_fmt(best)} at rung step {step} is {verdict} the best 1/{eta} "
            f"of {rung.trials} trials (cutoff {_fmt(rung.cutoff)})",
        )

    def decide_curve(self, curve: RunningCurve) -> StopDecision:
        return self.decide_at(curve.steps, curve.best)

    def rules(self) -> list[StopRule]:
        """One rule, at the first decided rung (see the module docstring)."""
        for step in sorted(self._rungs):
            rung = self.cutoff(step)
            if rung is not None:
                comparison = Comparison.GREATER if self._minimize else Comparison.LESS
                return [StopRule(self.objective.metric_name, rung.cutoff, comparison, step)]
        return []


class Asha(EarlyStopper):
    """Asynchronous successive halving over the objective's reports."""

    name = "asha"
    settings_type = AshaSettings
    settings: AshaSettings
    compared_conditions: ClassVar[frozenset[TrialCondition]] = frozenset(
        {TrialCondition.SUCCEEDED, TrialCondition.EARLY_STOPPED}
    )

    def prepare(
        self, objective: Objective, completed: Iterable[Sequence[Observation]]
    ) -> AshaPolicy:
        minimize = objective.type is ObjectiveType.MINIMIZE
        curves = [
            prefix_best(objective_curve(observations, objective.metric_name), minimize)
            for observations in completed
        ]
        longest = max((len(c) for c in curves), default=0)
        quantile = 1.0 / self.settings.reduction_factor
        rungs: dict[int, tuple[float, int]] = {}
        for step in self.settings.rungs(longest):
            reached = [c for c in curves if len(c) >= step]
            values = [c[step - 1] for c in reached if c[step - 1] is not None]
            if not values:
                continue
            # best first: lower is better when minimising, higher when maximising
            ordered = np.asarray(values if minimize else [-v for v in values], dtype=float)
            cut = float(np.quantile(ordered, quantile))
            rungs[step] = (cut if minimize else -cut, len(values))
        return AshaPolicy(objective, self.settings, rungs)
