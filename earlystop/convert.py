"""Conversions between Katib's ``api.v1.beta1`` messages and earlystop's domain values.

Called by ``earlystop.service`` and ``earlystop.sources``; the stoppers never see protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable

from earlystop import get_early_stopper
from earlystop.base import Comparison, EarlyStopper, InvalidRequestError, StopRule
from tunery.api import api_pb2
from tunery.trials import Objective, ObjectiveType, Observation

_OBJECTIVE_TYPES = {
    api_pb2.MINIMIZE: ObjectiveType.MINIMIZE,
    api_pb2.MAXIMIZE: ObjectiveType.MAXIMIZE,
}

_COMPARISONS = {
    Comparison.EQUAL: api_pb2.EQUAL,
    Comparison.LESS: api_pb2.LESS,
    Comparison.GREATER: api_pb2.GREATER,
}


def objective_from_proto(spec: api_pb2.ObjectiveSpec) -> Objective:
    """The objective of an ``ObjectiveSpec`` (type and metric name; the goal is not needed).

    Raises:
        InvalidRequestError: the type is not MINIMIZE/MAXIMIZE or the metric name is empty.
    """
    objective_type = _OBJECTIVE_TYPES.get(spec.type)
    if objective_type is None:
        name = api_pb2.ObjectiveType.Name(spec.type) if spec.type in (0, 1, 2) else spec.type
        raise InvalidRequestError(
            f"experiment.spec.objective.type must be MINIMIZE or MAXIMIZE, got {name}"
        )
    if not spec.objective_metric_name:
        raise InvalidRequestError("experiment.spec.objective.objective_metric_name is empty")
    return Objective(objective_type, spec.objective_metric_name)


def stopper_from_proto(spec: api_pb2.EarlyStoppingSpec) -> EarlyStopper:
    """The configured stopper of an ``EarlyStoppingSpec``.

    Raises:
        UnknownAlgorithmError: "unknown algorithm name X; available: ...".
        InvalidSettingsError: Katib's settings messages.
    """
    cls = get_early_stopper(spec.algorithm_name)
    return cls.from_settings([(s.name, s.value) for s in spec.algorithm_settings])


def rule_to_proto(rule: StopRule) -> api_pb2.EarlyStoppingRule:
    return api_pb2.EarlyStoppingRule(
        name=rule.metric_name,
        value=repr(rule.value),
        comparison=_COMPARISONS[rule.comparison],
        start_step=rule.start_step,
    )


def observations_from_log(
    metric_logs: Iterable[api_pb2.MetricLog], metric_name: str
) -> list[Observation]:
    """Observations of ``metric_name`` from a DBManager reply, stepped by their order.

    The wire carries no step: a DBManager returns logs ordered by time, which is the order
    Katib's sidecar counts reports in, so the n-th log of the metric gets step n-1.
    """
    out: list[Observation] = []
    for log in metric_logs:
        if log.metric.name != metric_name:
            continue
        out.append(Observation.of(metric_name, log.metric.value, len(out)))
    return out
