"""Build Katib's gRPC messages from stored experiments and trials (ConvertExperiment/Trials).

Called by the reconciler before every GetSuggestions / GetEarlyStoppingRules call, whether the
service runs in-process or behind gRPC, so both paths see exactly what Katib's controller sends.
:class:`SuggestionRequestEncoder` builds the serialised GetSuggestionsRequest incrementally:
each trial is converted and encoded once per change and its bytes reused by every later
request (Katib's format carries the whole history in each request).

tunery's search extensions travel in fields Katib ignores (:mod:`tunery.search_extensions`):
parameter conditions and ``objective.constraints`` become the reserved algorithm settings
``tunery.conditions`` / ``tunery.constraints``, and each constraint metric is sent as an
additional metric; an experiment without extensions gives exactly Katib's messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunery.api import api_pb2
from tunery.search_extensions import (
    CONDITIONS_SETTING,
    CONSTRAINTS_SETTING,
    encode_conditions,
    encode_constraints,
)
from tunery.store.base import TrialRecord
from tunery.trials import (
    OBJECTIVES_SETTING,
    MetricStrategy,
    MetricSummary,
    ObjectiveTerm,
    ObjectiveType,
    TrialCondition,
    encode_objectives_setting,
)

_TYPES = {
    "double": api_pb2.DOUBLE,
    "int": api_pb2.INT,
    "discrete": api_pb2.DISCRETE,
    "categorical": api_pb2.CATEGORICAL,
}
_DISTRIBUTIONS = {
    "uniform": api_pb2.UNIFORM,
    "logUniform": api_pb2.LOG_UNIFORM,
    "normal": api_pb2.NORMAL,
    "logNormal": api_pb2.LOG_NORMAL,
}
_CONDITIONS = {
    TrialCondition.CREATED: api_pb2.TrialStatus.CREATED,
    TrialCondition.RUNNING: api_pb2.TrialStatus.RUNNING,
    TrialCondition.SUCCEEDED: api_pb2.TrialStatus.SUCCEEDED,
    TrialCondition.KILLED: api_pb2.TrialStatus.KILLED,
    TrialCondition.FAILED: api_pb2.TrialStatus.FAILED,
    TrialCondition.EARLY_STOPPED: api_pb2.TrialStatus.EARLYSTOPPED,
    # Katib has no mapping for MetricsUnavailable (it becomes UNKNOWN); such trials are not sent.
    TrialCondition.METRICS_UNAVAILABLE: api_pb2.TrialStatus.UNKNOWN,
}


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def objective_proto(objective: Mapping[str, Any]) -> api_pb2.ObjectiveSpec:
    return api_pb2.ObjectiveSpec(
        type=api_pb2.MAXIMIZE if objective.get("type") == "maximize" else api_pb2.MINIMIZE,
        goal=float(objective["goal"]) if objective.get("goal") is not None else 0.0,
        objective_metric_name=objective["objectiveMetricName"],
        additional_metric_names=_additional(objective),
    )


def _additional(objective: Mapping[str, Any]) -> list[str]:
    """Additional metrics, then the constraint metrics not already among them."""
    names = list(objective.get("additionalMetricNames") or [])
    names += [c for c in objective.get("constraints") or [] if c not in names]
    return names


def _extension_settings(spec: Mapping[str, Any]) -> list[api_pb2.AlgorithmSetting]:
    conditions = {
        p["name"]: (
            p["condition"]["parameter"],
            [_str(v) for v in p["condition"].get("values") or []],
        )
        for p in spec.get("parameters") or []
        if p.get("condition")
    }
    out = []
    if conditions:
        out.append(
            api_pb2.AlgorithmSetting(name=CONDITIONS_SETTING, value=encode_conditions(conditions))
        )
    constraints = (spec.get("objective") or {}).get("constraints") or []
    if constraints:
        out.append(
            api_pb2.AlgorithmSetting(
                name=CONSTRAINTS_SETTING, value=encode_constraints(constraints)
            )
        )
    return out


def objectives_setting(objective: Mapping[str, Any]) -> list[api_pb2.AlgorithmSetting]:
    """The ``tunery.io/objectives`` algorithm setting of a multi-objective experiment (the
    objectives after Katib's, docs/multi-objective.md); [] for a plain Katib objective."""
    items = objective.get("objectives") or []
    if len(items) < 2:
        return []
    terms = [ObjectiveTerm(o["name"], ObjectiveType(o["type"]), o.get("goal")) for o in items[1:]]
    return [
        api_pb2.AlgorithmSetting(name=OBJECTIVES_SETTING, value=encode_objectives_setting(terms))
    ]


def experiment_proto(name: str, spec: Mapping[str, Any]) -> api_pb2.Experiment:
    """Katib's ConvertExperiment from the Experiment document's ``spec`` (plus tunery's
    multi-objective setting when the objective lists several)."""
    parameters = [
        api_pb2.ParameterSpec(
            name=p["name"],
            parameter_type=_TYPES.get(p["parameterType"], api_pb2.UNKNOWN_TYPE),
            feasible_space=api_pb2.FeasibleSpace(
                max=_str(p["feasibleSpace"].get("max")),
                min=_str(p["feasibleSpace"].get("min")),
                list=[str(v) for v in p["feasibleSpace"].get("list") or []],
                step=_str(p["feasibleSpace"].get("step")),
                distribution=_DISTRIBUTIONS.get(
                    p["feasibleSpace"].get("distribution") or "", api_pb2.DISTRIBUTION_UNSPECIFIED
                ),
            ),
        )
        for p in spec.get("parameters") or []
    ]
    algorithm = spec.get("algorithm") or {}
    early = spec.get("earlyStopping") or {}
    return api_pb2.Experiment(
        name=name,
        spec=api_pb2.ExperimentSpec(
            parameter_specs=api_pb2.ExperimentSpec.ParameterSpecs(parameters=parameters),
            objective=objective_proto(spec["objective"]),
            algorithm=api_pb2.AlgorithmSpec(
                algorithm_name=algorithm.get("algorithmName", ""),
                algorithm_settings=[
                    *(
                        api_pb2.AlgorithmSetting(name=s["name"], value=_str(s.get("value")))
                        for s in algorithm.get("algorithmSettings") or []
                    ),
                    *_extension_settings(spec),
                    *objectives_setting(spec["objective"]),
                ],
            ),
            early_stopping=api_pb2.EarlyStoppingSpec(
                algorithm_name=early.get("algorithmName", ""),
                algorithm_settings=[
                    api_pb2.EarlyStoppingSetting(name=s["name"], value=_str(s.get("value")))
                    for s in early.get("algorithmSettings") or []
                ],
            ),
            parallel_trial_count=int(spec.get("parallelTrialCount") or 0),
            max_trial_count=int(spec.get("maxTrialCount") or 0),
        ),
    )


def _strategies(objective: Mapping[str, Any]) -> dict[str, MetricStrategy]:
    return {s["name"]: MetricStrategy(s["value"]) for s in objective.get("metricStrategies") or []}


def trial_proto(trial: TrialRecord, objective: Mapping[str, Any]) -> api_pb2.Trial:
    """One trial as Katib sends it: assignments, last condition, metrics by strategy."""
    strategies = _strategies(objective)
    metrics = []
    for m in (trial.observation or {}).get("metrics", []):
        summary = MetricSummary(m["name"], m["min"], m["max"], m["latest"])
        strategy = strategies.get(m["name"], MetricStrategy.LATEST)
        metrics.append(api_pb2.Metric(name=m["name"], value=summary.select(strategy)))
    return api_pb2.Trial(
        name=trial.name,
        spec=api_pb2.TrialSpec(
            objective=objective_proto(objective),
            parameter_assignments=api_pb2.TrialSpec.ParameterAssignments(
                assignments=[
                    api_pb2.ParameterAssignment(name=k, value=v)
                    for k, v in trial.assignment.items()
                ]
            ),
            labels=dict(trial.labels),
        ),
        status=api_pb2.TrialStatus(
            start_time=_rfc3339(trial.start_time),
            completion_time=_rfc3339(trial.completion_time),
            condition=_CONDITIONS[trial.condition],
            observation=api_pb2.Observation(metrics=metrics),
        ),
    )


def _rfc3339(value: Any) -> str:
    return "" if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def suggestion_trials(
    trials: Sequence[TrialRecord], objective: Mapping[str, Any]
) -> list[api_pb2.Trial]:
    """Katib's ConvertTrials filter: all trials except MetricsUnavailable ones and
    early-stopped ones without an observation."""
    sent = []
    for t in trials:
        if t.condition is TrialCondition.METRICS_UNAVAILABLE:
            continue
        if t.condition is TrialCondition.EARLY_STOPPED and not (t.observation or {}).get(
            "metrics"
        ):
            continue
        sent.append(trial_proto(t, objective))
    return sent


def suggestions_request(
    name: str, spec: Mapping[str, Any], trials: Sequence[TrialRecord], count: int
) -> api_pb2.GetSuggestionsRequest:
    sent = suggestion_trials(trials, spec["objective"])
    return api_pb2.GetSuggestionsRequest(
        experiment=experiment_proto(name, spec),
        trials=sent,
        current_request_number=count,
        total_request_number=len(sent) + count,
    )


def _field_bytes(**fields: Any) -> bytes:
    """The wire bytes of these GetSuggestionsRequest fields alone."""
    return api_pb2.GetSuggestionsRequest(**fields).SerializeToString()


def _is_sent(trial: TrialRecord) -> bool:
    """Katib's ConvertTrials filter (see :func:`suggestion_trials`)."""
    if trial.condition is TrialCondition.METRICS_UNAVAILABLE:
        return False
    return not (
        trial.condition is TrialCondition.EARLY_STOPPED
        and not (trial.observation or {}).get("metrics")
    )


class SuggestionRequestEncoder:
    """One experiment's serialised GetSuggestionsRequest, kept up to date per trial change.

    :meth:`apply` encodes the trials that changed (each once); :meth:`encode` joins the cached
    bytes: the experiment, the trials in creation order, then the counts, which is exactly
    protobuf's own serialisation of :func:`suggestions_request`. The unchanged prefix from one
    request to the next is what lets the suggestion service parse only the new tail.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._trials: dict[str, bytes] = {}  # creation order; b"" for a trial not sent
        self._records: dict[str, TrialRecord] = {}
        self._sent = 0
        self._objective: Mapping[str, Any] | None = None
        self._spec: Mapping[str, Any] | None = None
        self._experiment = b""

    def apply(self, changed: Sequence[TrialRecord], spec: Mapping[str, Any]) -> None:
        """Encode the trials created or changed since the last call."""
        if spec.get("objective") != self._objective:  # the trial messages carry the objective
            self._objective = spec["objective"]
            changed = [*self._records.values(), *changed]
        for trial in changed:
            self._records[trial.name] = trial
            old = self._trials.get(trial.name, b"")
            new = (
                _field_bytes(trials=[trial_proto(trial, spec["objective"])])
                if _is_sent(trial)
                else b""
            )
            self._sent += bool(new) - bool(old)
            self._trials[trial.name] = new

    def encode(self, spec: Mapping[str, Any], count: int) -> bytes:
        """The serialised GetSuggestionsRequest asking for ``count`` assignments."""
        if spec != self._spec:
            self._spec = spec
            self._experiment = _field_bytes(experiment=experiment_proto(self.name, spec))
        tail = _field_bytes(current_request_number=count, total_request_number=self._sent + count)
        return b"".join((self._experiment, *self._trials.values(), tail))
