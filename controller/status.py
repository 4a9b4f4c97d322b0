"""Katib's experiment status arithmetic: trial counters and lists, the optimal trial, the
experiment condition, and how many trials to add. Pure functions over store records and over
a :class:`controller.trial_view.TrialView` (the status document).

Called by the reconciler on every pass (local and Kubernetes), so both write exactly Katib's
``status`` fields. See katib-reference.md §7.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunery.pareto import nondominated_mask
from tunery.store.base import TrialRecord
from tunery.trials import MetricSummary, Objective, TrialCondition, is_feasible

if TYPE_CHECKING:
    from controller.trial_view import TrialView


class ExperimentReason:
    CREATED = "ExperimentCreated"
    RUNNING = "ExperimentRunning"
    RESTARTING = "ExperimentRestarting"
    GOAL_REACHED = "ExperimentGoalReached"
    MAX_TRIALS_REACHED = "ExperimentMaxTrialsReached"
    SUGGESTION_END_REACHED = "ExperimentSuggestionEndReached"
    FAILED = "ExperimentFailed"
    INTERRUPTED = "ExperimentInterrupted"
    """tunery's own reason: the local run was stopped (Ctrl-C, SIGTERM, SIGHUP); resumable."""


MESSAGES = {
    ExperimentReason.CREATED: "Experiment is created",
    ExperimentReason.RUNNING: "Experiment is running",
    ExperimentReason.RESTARTING: "Experiment is restarted",
    ExperimentReason.GOAL_REACHED: "Experiment has succeeded because Objective goal has reached",
    ExperimentReason.MAX_TRIALS_REACHED: (
        "Experiment has succeeded because max trial count has reached"
    ),
    ExperimentReason.SUGGESTION_END_REACHED: (
        "Experiment has succeeded because suggestion service has reached the end"
    ),
    ExperimentReason.FAILED: "Experiment has failed because max failed count has reached",
}

# Katib's classification order (updateTrialsSummary): first match wins.
_LISTS = (
    (TrialCondition.KILLED, "killedTrialList", "trialsKilled"),
    (TrialCondition.FAILED, "failedTrialList", "trialsFailed"),
    (TrialCondition.SUCCEEDED, "succeededTrialList", "trialsSucceeded"),
    (TrialCondition.EARLY_STOPPED, "earlyStoppedTrialList", "trialsEarlyStopped"),
    (TrialCondition.RUNNING, "runningTrialList", "trialsRunning"),
    (TrialCondition.METRICS_UNAVAILABLE, "metricsUnavailableTrialList", "trialMetricsUnavailable"),
    (TrialCondition.CREATED, "pendingTrialList", "trialsPending"),
)


@dataclass(frozen=True)
class TrialCounts:
    total: int
    pending: int
    running: int
    succeeded: int
    failed: int
    killed: int
    early_stopped: int
    metrics_unavailable: int

    @property
    def active(self) -> int:
        return self.pending + self.running

    @property
    def completed(self) -> int:
        """Katib's ``completed`` for the max-trial check (MetricsUnavailable included)."""
        return (
            self.succeeded
            + self.failed
            + self.killed
            + self.early_stopped
            + self.metrics_unavailable
        )

    @property
    def failed_for_budget(self) -> int:
        """Katib's ``failed`` for maxFailedTrialCount: Failed + MetricsUnavailable."""
        return self.failed + self.metrics_unavailable


def count_trials(trials: Sequence[TrialRecord]) -> TrialCounts:
    by = {c: 0 for c in TrialCondition}
    for t in trials:
        by[t.condition] += 1
    return TrialCounts(
        total=len(trials),
        pending=by[TrialCondition.CREATED],
        running=by[TrialCondition.RUNNING],
        succeeded=by[TrialCondition.SUCCEEDED],
        failed=by[TrialCondition.FAILED],
        killed=by[TrialCondition.KILLED],
        early_stopped=by[TrialCondition.EARLY_STOPPED],
        metrics_unavailable=by[TrialCondition.METRICS_UNAVAILABLE],
    )


def trial_objective_value(trial: TrialRecord, objective: Objective) -> float | None:
    """The trial's objective value by its metric strategy; None when unavailable or not finite."""
    metrics = {m["name"]: m for m in (trial.observation or {}).get("metrics", [])}
    metric = metrics.get(objective.metric_name)
    if metric is None:
        return None
    summary = MetricSummary(metric["name"], metric["min"], metric["max"], metric["latest"])
    return summary.select_numeric(objective.strategy(objective.metric_name))


def trial_constraint_values(trial: TrialRecord, objective: Objective) -> tuple[float, ...]:
    """The trial's constraint values by their strategies (NaN where unavailable)."""
    metrics = {m["name"]: m for m in (trial.observation or {}).get("metrics", [])}

    def value(name: str) -> float | None:
        metric = metrics.get(name)
        if metric is None:
            return None
        summary = MetricSummary(metric["name"], metric["min"], metric["max"], metric["latest"])
        return summary.select_numeric(objective.strategy(name))

    return objective.constraint_values(value)


def trial_is_feasible(trial: TrialRecord, objective: Objective) -> bool:
    """Whether the trial meets every constraint of the objective (True without any)."""
    return not objective.constraints or is_feasible(trial_constraint_values(trial, objective))


def trial_objective_values(trial: TrialRecord, objective: Objective) -> tuple[float, ...] | None:
    """Every objective's value (multi-objective), None unless all are available and finite."""
    metrics = {m["name"]: m for m in (trial.observation or {}).get("metrics", [])}
    out = []
    for term in objective.terms:
        metric = metrics.get(term.metric_name)
        if metric is None:
            return None
        summary = MetricSummary(metric["name"], metric["min"], metric["max"], metric["latest"])
        value = summary.select_numeric(objective.strategy(term.metric_name))
        if value is None:
            return None
        out.append(value)
    return tuple(out)


def pareto_front_trials(
    trials: Sequence[TrialRecord], objective: Objective
) -> list[tuple[TrialRecord, tuple[float, ...]]]:
    """The non-dominated trials by every objective (Failed trials excluded, as for the
    optimal trial), in creation order; trials with equal values all stay."""
    scored = []
    for trial in trials:
        if trial.condition is TrialCondition.FAILED:
            continue
        values = trial_objective_values(trial, objective)
        if values is not None:
            scored.append((trial, values))
    if not scored:
        return []
    mask = nondominated_mask([objective.losses(v) for _, v in scored])
    return [pair for pair, keep in zip(scored, mask, strict=True) if keep]


def multi_goal_reached(trials: Sequence[TrialRecord], objective: Objective) -> bool:
    """A multi-objective experiment's goal: one (non-Failed) trial reaches the goal of every
    objective that has one (docs/multi-objective.md)."""
    if all(t.goal is None for t in objective.terms):
        return False
    return any(
        trial.condition is not TrialCondition.FAILED
        and objective.goals_reached(trial_objective_values(trial, objective))
        for trial in trials
    )


def optimal_trial(
    trials: Sequence[TrialRecord], objective: Objective
) -> tuple[TrialRecord, float] | None:
    """The best trial with a finite objective value (the first one wins ties, as in Katib).

    A Failed trial is never the best: Katib ranks every trial with an observation, but a trial
    that reported a metric and then crashed did not produce a usable result (its goal is not
    reached either). Killed and EarlyStopped trials keep their metrics and count. A trial that
    does not meet the objective's constraints is never the best.
    """
    best: tuple[TrialRecord, float] | None = None
    for trial in trials:
        if trial.condition is TrialCondition.FAILED or not trial_is_feasible(trial, objective):
            continue
        value = trial_objective_value(trial, objective)
        if value is None:
            continue
        if best is None or objective.is_better(value, best[1]):
            best = (trial, value)
    return best


def trials_to_add(counts: TrialCounts, parallel: int, max_trials: int | None) -> int:
    """How many new trials to create now (Katib's ReconcileTrials).

    Unlike Katib, MetricsUnavailable trials count as completed here too, so the number of
    trials never exceeds maxTrialCount.
    """
    completed = counts.completed
    required = parallel if max_trials is None else min(parallel, max_trials - completed)
    return max(0, required - counts.active)


STATUS_LIST_LIMIT = 100
"""The trial-name lists of the status document name at most this many trials per condition
(the most recent ones); the counters beside them are exact. Active trials are bounded by the
parallel count anyway; ``tunery trials`` lists every trial."""


def build_status(
    previous: Mapping[str, Any],
    view: TrialView,
    condition: tuple[str, str, str] | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """Katib's ``status`` document from the view of the trials, keeping start time and
    condition history. Counters are exact; each trial-name list holds the last
    :data:`STATUS_LIST_LIMIT` trials of its condition.

    ``condition`` is ``(type, reason, message)`` to set (None keeps the current one).
    """
    status: dict[str, Any] = {
        k: v for k, v in previous.items() if k in ("startTime", "conditions", "completionTime")
    }
    status.setdefault("startTime", now.isoformat())
    counts = view.counts()
    for cond, list_key, count_key in _LISTS:
        status[list_key] = list(view.recent_names(cond, STATUS_LIST_LIMIT))
        status[count_key] = getattr(counts, _COUNT_FIELDS[cond])
    status["trials"] = counts.total
    best = view.best()
    if best is not None:
        trial, _ = best
        status["currentOptimalTrial"] = {
            "bestTrialName": trial.name,
            "parameterAssignments": [{"name": k, "value": v} for k, v in trial.assignment.items()],
            "observation": {"metrics": list((trial.observation or {}).get("metrics", []))},
        }
    else:
        status["currentOptimalTrial"] = {
            "bestTrialName": "",
            "parameterAssignments": [],
            "observation": {"metrics": []},
        }
    if view.objective.is_multi:
        status.update(pareto_status(view.trials(), view.objective))
    if condition is not None:
        status["conditions"] = set_condition(status.get("conditions", []), *condition, now=now)
        if condition[0] in ("Succeeded", "Failed"):
            status["completionTime"] = now.isoformat()
        else:
            status.pop("completionTime", None)
    status["lastReconcileTime"] = now.isoformat()
    return status


_COUNT_FIELDS = {
    TrialCondition.CREATED: "pending",
    TrialCondition.RUNNING: "running",
    TrialCondition.SUCCEEDED: "succeeded",
    TrialCondition.FAILED: "failed",
    TrialCondition.KILLED: "killed",
    TrialCondition.EARLY_STOPPED: "early_stopped",
    TrialCondition.METRICS_UNAVAILABLE: "metrics_unavailable",
}


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    reason: str,
    message: str,
    *,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """Katib's condition list after setting ``type_`` True.

    Succeeded/Failed turn Running False; Running/Restarting turn Succeeded/Failed False.
    The transition time changes only when the status flips.
    """
    out = [dict(c) for c in conditions]
    falsify = {
        "Succeeded": {"Running", "Restarting"},
        "Failed": {"Running", "Restarting"},
        "Running": {"Succeeded", "Failed", "Restarting"},
        "Restarting": {"Succeeded", "Failed"},
    }.get(type_, set())
    for c in out:
        if c["type"] in falsify and c["status"] == "True":
            c.update(
                status="False", lastUpdateTime=now.isoformat(), lastTransitionTime=now.isoformat()
            )
    for c in out:
        if c["type"] == type_:
            if c["status"] != "True":
                c["lastTransitionTime"] = now.isoformat()
            c.update(status="True", reason=reason, message=message, lastUpdateTime=now.isoformat())
            return out
    out.append(
        {
            "type": type_,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastUpdateTime": now.isoformat(),
            "lastTransitionTime": now.isoformat(),
        }
    )
    return out


def current_condition(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The most recently updated condition whose status is True."""
    true = [c for c in status.get("conditions", []) if c.get("status") == "True"]
    return max(true, key=lambda c: c.get("lastUpdateTime", ""), default=None)


def mark_interrupted(status: Mapping[str, Any], message: str, now: dt.datetime) -> dict[str, Any]:
    """``status`` with the experiment marked interrupted: Katib's ``Running`` condition turned
    False with reason ``ExperimentInterrupted`` (no new condition type, so Katib's clients and
    ``kubectl`` read it). The next Running condition (on resume) turns it True again."""
    out = dict(status)
    conditions = [dict(c) for c in status.get("conditions", [])]
    running = next((c for c in conditions if c["type"] == "Running"), None)
    if running is None:
        running = {"type": "Running"}
        conditions.append(running)
    if running.get("status") != "False":
        running["lastTransitionTime"] = now.isoformat()
    running.update(
        status="False",
        reason=ExperimentReason.INTERRUPTED,
        message=message,
        lastUpdateTime=now.isoformat(),
    )
    out["conditions"] = conditions
    return out


def is_interrupted(status: Mapping[str, Any]) -> bool:
    """Whether the experiment's local run was interrupted and nothing happened since: its
    Running condition is False with reason ``ExperimentInterrupted`` and no True condition was
    updated later (a resume turns Running True; completion sets Succeeded or Failed)."""
    conditions = status.get("conditions", [])
    running = next((c for c in conditions if c.get("type") == "Running"), None)
    if (
        running is None
        or running.get("status") != "False"
        or running.get("reason") != ExperimentReason.INTERRUPTED
    ):
        return False
    when = running.get("lastUpdateTime", "")
    return not any(
        c.get("status") == "True" and c.get("lastUpdateTime", "") > when for c in conditions
    )


def shown_condition(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The condition to show a user: ``{"type": "Interrupted", ...}`` for an interrupted
    experiment (resumable; not Running), else :func:`current_condition`."""
    if is_interrupted(status):
        running = next(c for c in status["conditions"] if c["type"] == "Running")
        return {**running, "type": "Interrupted"}
    return current_condition(status)


def is_completed(status: Mapping[str, Any]) -> bool:
    cond = current_condition(status)
    return cond is not None and cond["type"] in ("Succeeded", "Failed")


def pareto_status(trials: Sequence[TrialRecord], objective: Objective) -> dict[str, Any]:
    """tunery's multi-objective status extension: ``paretoFront`` (at most
    :data:`STATUS_LIST_LIMIT` entries, ordered by the first objective, each the trial name,
    its assignment and every objective's value) and ``paretoFrontSize`` (the exact count).
    ``currentOptimalTrial`` stays Katib's: the best trial by the first objective."""
    front = pareto_front_trials(trials, objective)
    first = objective.terms[0]
    front.sort(key=lambda pair: first.sign * pair[1][0])
    return {
        "paretoFrontSize": len(front),
        "paretoFront": [
            {
                "trialName": trial.name,
                "parameterAssignments": [
                    {"name": k, "value": v} for k, v in trial.assignment.items()
                ],
                "values": [
                    {"name": t.metric_name, "value": v}
                    for t, v in zip(objective.terms, values, strict=True)
                ],
            }
            for trial, values in front[:STATUS_LIST_LIMIT]
        ],
    }


def decide_condition(
    counts: TrialCounts,
    best_value: float | None,
    objective: Objective,
    max_trials: int | None,
    max_failed: int | None,
    goal_met: bool | None = None,
) -> tuple[str, str, str]:
    """Katib's experiment condition for the current trial counts (not yet completed).

    ``goal_met`` overrides the goal test on ``best_value`` (multi-objective experiments:
    :func:`multi_goal_reached`)."""
    if goal_met is None:
        goal_met = best_value is not None and objective.goal_reached(best_value)
    if goal_met:
        reason = ExperimentReason.GOAL_REACHED
        return "Succeeded", reason, MESSAGES[reason]
    failed = counts.failed_for_budget
    if max_failed is not None and failed != 0 and failed >= max_failed:
        reason = ExperimentReason.FAILED
        return "Failed", reason, MESSAGES[reason]
    if max_trials is not None and counts.completed >= max_trials:
        reason = ExperimentReason.MAX_TRIALS_REACHED
        return "Succeeded", reason, MESSAGES[reason]
    reason = ExperimentReason.RUNNING
    return "Running", reason, MESSAGES[reason]


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
