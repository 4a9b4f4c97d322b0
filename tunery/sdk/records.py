"""The SDK's result values: :class:`TrialInfo`, :class:`OptimalTrial`, :class:`TuneResult`, and
their construction from store records (local) or Trial/Experiment resources (Kubernetes).

Part of :mod:`tunery.sdk` (kernel-clean), which re-exports the classes. Parameter
values are typed with the experiment's search space (``int``/``float``/``str``); a value the
space cannot parse (a hand-edited document) stays the wire string rather than failing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from tunery.pareto import nondominated_mask
from tunery.space import ParamValue, SearchSpace, SpaceError
from tunery.store.base import TrialRecord
from tunery.trials import MetricSummary, Objective, TrialCondition, is_feasible


@dataclass(frozen=True)
class TrialInfo:
    """One trial: its typed parameters, state and metrics.

    ``condition`` is the latest condition (``TrialCondition`` is a ``str`` enum:
    ``trial.condition == "Succeeded"`` works). ``value`` is the objective metric chosen by its
    metric strategy (min for minimize, max for maximize), None when unavailable; ``metrics``
    holds every metric chosen the same way; ``observation`` Katib's raw min/max/latest strings.
    ``log_path`` is the local log file (None on Kubernetes: use ``Client.get_trial_logs``).
    """

    name: str
    parameters: Mapping[str, ParamValue]
    condition: TrialCondition
    reason: str = ""
    message: str = ""
    value: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    observation: tuple[MetricSummary, ...] = ()
    start_time: dt.datetime | None = None
    completion_time: dt.datetime | None = None
    log_path: str | None = None

    @property
    def is_completed(self) -> bool:
        """Whether the trial reached a terminal condition."""
        return self.condition.is_terminal

    @property
    def is_warm_start(self) -> bool:
        """Whether the trial is a warm-start result, imported and never run
        (``Client.add_trials``, ``tune(warm_start=...)``, ``tunery run --warm-start``)."""
        return self.reason == "WarmStart"


@dataclass(frozen=True)
class OptimalTrial:
    """Katib's ``currentOptimalTrial`` with typed parameter values."""

    best_trial_name: str
    parameter_assignments: Mapping[str, ParamValue]
    value: float | None
    metrics: Mapping[str, float]
    observation: tuple[MetricSummary, ...] = ()


@dataclass(frozen=True)
class TuneResult:
    """What ``tune()`` returns.

    ``best_parameters`` are the tuned values of the best trial (typed; constants are not
    repeated), ``best_value`` its objective value, ``best_metrics`` all its metrics;
    ``trials`` every trial in creation order. ``condition``/``reason``/``message`` give how the
    experiment ended (``"Succeeded"``, ``"ExperimentMaxTrialsReached"``, ...).
    """

    experiment_name: str
    best_trial: str | None
    best_parameters: Mapping[str, ParamValue]
    best_value: float | None
    best_metrics: Mapping[str, float]
    trials: tuple[TrialInfo, ...]
    condition: str = ""
    reason: str = ""
    message: str = ""
    pareto_front: tuple[TrialInfo, ...] = ()
    """Multi-objective experiments: the non-dominated trials by every objective (Failed
    trials excluded), ordered by the first objective; empty for a single objective. The
    ``best_*`` fields then describe the best trial by the first objective."""

    def __repr__(self) -> str:
        """Every field but ``trials``, which is counted (printing a result of a few hundred
        trials would fill the screen); ``result.trials`` holds them."""
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in ("trials", "pareto_front")
        )
        front = f", pareto_front=<{len(self.pareto_front)} trials>" if self.pareto_front else ""
        return f"TuneResult({shown}, trials=<{len(self.trials)} trials>{front})"

    def trials_by_condition(self, condition: str) -> tuple[TrialInfo, ...]:
        """The trials whose condition is ``condition`` (e.g. ``"Failed"``)."""
        return tuple(t for t in self.trials if t.condition == condition)

    def to_dataframe(self) -> Any:
        """The trials as a pandas DataFrame: ``trial``, ``condition``, ``reason``, ``value``,
        ``params.<name>``, ``metrics.<name>``, ``start_time``, ``completion_time`` and
        ``duration`` (seconds). Needs pandas (``pip install 'tunery[pandas]'``).

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        from tunery.sdk.export import to_dataframe

        return to_dataframe(self.trials)

    def _repr_html_(self) -> str:
        """Jupyter shows a result as a table: how it ended, the best trial, the trials."""
        from tunery.sdk.export import result_html

        return result_html(self)


# -- conversions ----------------------------------------------------------------------------------


def typed_assignment(
    assignment: Mapping[str, str], space: SearchSpace | None
) -> dict[str, ParamValue]:
    """Typed values of a wire assignment; unknown or unparsable values stay strings."""
    out: dict[str, ParamValue] = {}
    for name, text in assignment.items():
        value: ParamValue = text
        if space is not None:
            with contextlib.suppress(KeyError, SpaceError):
                value = space[name].parse(text)
        out[name] = value
    return out


def summaries(metrics: Iterable[Mapping[str, Any]]) -> tuple[MetricSummary, ...]:
    """Katib's ``observation.metrics`` entries as :class:`MetricSummary` values."""
    out = []
    for m in metrics:
        if not isinstance(m, Mapping) or "name" not in m:
            continue
        out.append(
            MetricSummary(
                str(m["name"]),
                str(m.get("min", "unavailable")),
                str(m.get("max", "unavailable")),
                str(m.get("latest", "unavailable")),
            )
        )
    return tuple(out)


def selected_metrics(
    observation: Sequence[MetricSummary], objective: Objective
) -> dict[str, float]:
    """Each metric's value by its strategy (finite values only)."""
    out = {}
    for summary in observation:
        value = summary.select_numeric(objective.strategy(summary.name))
        if value is not None:
            out[summary.name] = value
    return out


def trial_info(
    *,
    name: str,
    assignment: Mapping[str, str],
    condition: TrialCondition,
    reason: str,
    message: str,
    metrics: Iterable[Mapping[str, Any]],
    objective: Objective,
    space: SearchSpace | None,
    start_time: dt.datetime | None = None,
    completion_time: dt.datetime | None = None,
    log_path: str | None = None,
) -> TrialInfo:
    observation = summaries(metrics)
    selected = selected_metrics(observation, objective)
    return TrialInfo(
        name=name,
        parameters=typed_assignment(assignment, space),
        condition=condition,
        reason=reason,
        message=message,
        value=selected.get(objective.metric_name),
        metrics=selected,
        observation=observation,
        start_time=start_time,
        completion_time=completion_time,
        log_path=log_path,
    )


def from_record(record: TrialRecord, objective: Objective, space: SearchSpace | None) -> TrialInfo:
    """A :class:`TrialInfo` of a stored (local) trial."""
    log = record.runner_handle.get("log") if record.runner_handle else None
    return trial_info(
        name=record.name,
        assignment=record.assignment,
        condition=record.condition,
        reason=record.reason,
        message=record.message,
        metrics=(record.observation or {}).get("metrics", []),
        objective=objective,
        space=space,
        start_time=record.start_time,
        completion_time=record.completion_time,
        log_path=str(log) if log else None,
    )


def _time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def latest_condition(conditions: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recently updated condition whose status is True (list order breaks ties)."""
    true = [
        (str(c.get("lastUpdateTime") or ""), i, c)
        for i, c in enumerate(conditions or ())
        if isinstance(c, Mapping) and str(c.get("status", "")) == "True"
    ]
    return max(true, key=lambda t: t[:2])[2] if true else None


def trial_condition(conditions: Iterable[Mapping[str, Any]]) -> tuple[TrialCondition, str, str]:
    current = latest_condition(conditions)
    if current is None:
        return TrialCondition.CREATED, "", ""
    try:
        condition = TrialCondition(str(current.get("type")))
    except ValueError:
        condition = TrialCondition.CREATED
    return condition, str(current.get("reason", "")), str(current.get("message", ""))


def from_trial_resource(
    resource: Mapping[str, Any], objective: Objective, space: SearchSpace | None
) -> TrialInfo:
    """A :class:`TrialInfo` of a Kubernetes ``Trial`` resource (camelCase dict)."""
    spec = resource.get("spec") or {}
    status = resource.get("status") or {}
    condition, reason, message = trial_condition(status.get("conditions") or [])
    return trial_info(
        name=str((resource.get("metadata") or {}).get("name", "")),
        assignment={
            str(a["name"]): str(a.get("value", ""))
            for a in spec.get("parameterAssignments") or []
            if isinstance(a, Mapping) and "name" in a
        },
        condition=condition,
        reason=reason,
        message=message,
        metrics=(status.get("observation") or {}).get("metrics") or [],
        objective=objective,
        space=space,
        start_time=_time(status.get("startTime")),
        completion_time=_time(status.get("completionTime")),
    )


def trial_record(info: TrialInfo, experiment_name: str) -> TrialRecord:
    """A store-shaped record of a TrialInfo (for the progress view of cluster trials)."""
    return TrialRecord(
        name=info.name,
        experiment_name=experiment_name,
        assignment={k: str(v) for k, v in info.parameters.items()},
        condition=info.condition,
        reason=info.reason,
        message=info.message,
        observation={
            "metrics": [
                {"name": m.name, "min": m.min, "max": m.max, "latest": m.latest}
                for m in info.observation
            ]
        },
    )


def optimal_trial(
    status: Mapping[str, Any], objective: Objective, space: SearchSpace | None
) -> OptimalTrial | None:
    """The experiment's ``currentOptimalTrial``, typed; None before any trial has metrics."""
    best = status.get("currentOptimalTrial") or {}
    name = best.get("bestTrialName")
    observation = summaries((best.get("observation") or {}).get("metrics") or [])
    if not name or not observation:
        return None
    selected = selected_metrics(observation, objective)
    return OptimalTrial(
        best_trial_name=str(name),
        parameter_assignments=typed_assignment(
            {
                str(a["name"]): str(a.get("value", ""))
                for a in best.get("parameterAssignments") or []
                if isinstance(a, Mapping) and "name" in a
            },
            space,
        ),
        value=selected.get(objective.metric_name),
        metrics=selected,
        observation=observation,
    )


def tune_result(
    name: str,
    status: Mapping[str, Any],
    trials: Sequence[TrialInfo],
    objective: Objective,
    space: SearchSpace | None,
) -> TuneResult:
    """The result of an experiment from its status and trials.

    The best trial is the status's ``currentOptimalTrial`` unless that trial Failed or does not
    meet the objective's constraints (Katib ranks every trial with metrics; tunery's controller
    skips those): then it is the best feasible trial of ``trials`` that did not fail, or none.
    """
    best = optimal_trial(status, objective, space)
    failed = {t.name for t in trials if t.condition == TrialCondition.FAILED}
    if best is not None and (
        best.best_trial_name in failed or not feasible(best.metrics, objective)
    ):
        best = _best_of(trials, objective)
    current = latest_condition(status.get("conditions") or [])
    return TuneResult(
        experiment_name=name,
        best_trial=None if best is None else best.best_trial_name,
        best_parameters={} if best is None else dict(best.parameter_assignments),
        best_value=None if best is None else best.value,
        best_metrics={} if best is None else dict(best.metrics),
        trials=tuple(trials),
        condition=str((current or {}).get("type", "")),
        reason=str((current or {}).get("reason", "")),
        message=str((current or {}).get("message", "")),
        pareto_front=pareto_front(trials, objective),
    )


def feasible(metrics: Mapping[str, Any], objective: Objective) -> bool:
    """Whether selected ``metrics`` meet every constraint (True without constraints)."""
    return is_feasible(_number(metrics.get(c)) for c in objective.constraints)


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def pareto_front(trials: Sequence[TrialInfo], objective: Objective) -> tuple[TrialInfo, ...]:
    """The non-dominated trials of a multi-objective experiment by their selected metrics
    (Failed trials and trials missing an objective excluded), ordered by the first objective;
    () for a single objective."""
    if not objective.is_multi:
        return ()
    names = objective.objective_metric_names
    scored = [
        (t, objective.losses([t.metrics[n] for n in names]))
        for t in trials
        if t.condition != TrialCondition.FAILED and all(n in t.metrics for n in names)
    ]
    if not scored:
        return ()
    mask = nondominated_mask([loss for _, loss in scored])
    front = [pair for pair, keep in zip(scored, mask, strict=True) if keep]
    front.sort(key=lambda pair: pair[1][0])
    return tuple(t for t, _ in front)


def _best_of(trials: Sequence[TrialInfo], objective: Objective) -> OptimalTrial | None:
    """The best trial that did not fail (the first one wins ties)."""
    best: TrialInfo | None = None
    for trial in trials:
        if trial.condition == TrialCondition.FAILED or trial.value is None:
            continue
        if not feasible(trial.metrics, objective):
            continue
        if best is None or objective.is_better(trial.value, best.value):
            best = trial
    if best is None:
        return None
    return OptimalTrial(
        best.name, dict(best.parameters), best.value, dict(best.metrics), best.observation
    )
