"""Conversion between the Suggestion service's protos and the kernel's types.

Called by ``suggestion.service`` (and usable by any caller holding Katib protos). Builds a
:class:`~tunery.space.SearchSpace`, an :class:`~tunery.trials.Objective` and the raw algorithm
settings from an ``ExperimentSpec``; turns ``Trial`` protos into
:class:`~tunery.trials.TrialResult` with Katib's filtering; formats assignments back into wire
strings. Every malformed input raises :class:`InvalidRequestError` naming the field.

Katib's filtering: a SUCCEEDED or EARLYSTOPPED trial whose observation carries the objective
metric with a finite value is history; CREATED and RUNNING trials are pending; the rest
(FAILED, KILLED, METRICSUNAVAILABLE, UNKNOWN, or completed without a usable value) are kept
only so that their assignments are not proposed again.

tunery's extensions (:mod:`tunery.search_extensions`): the reserved algorithm settings
``tunery.conditions`` and ``tunery.constraints`` are taken out of the settings and applied to
the space and the objective; each trial's constraint values are read from its observation.

Multi-objective (tunery's extension, docs/multi-objective.md): the algorithm setting
``tunery.io/objectives`` lists the objectives after Katib's; it is taken out of the settings
the algorithm parses and becomes ``Objective.extra_objectives``, and each completed trial's
``values`` are read from its observation's metrics (the extra objectives travel there as
additional metrics).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from suggestion.algorithms.base import InvalidRequestError, SuggestedTrial
from tunery.api import api_pb2
from tunery.search_extensions import (
    CONDITIONS_SETTING,
    CONSTRAINTS_SETTING,
    apply_conditions,
    decode_constraints,
)
from tunery.space import (
    Assignment,
    Distribution,
    Parameter,
    SearchSpace,
    SpaceError,
    parse_number,
)
from tunery.trials import (
    OBJECTIVES_SETTING,
    Objective,
    ObjectivesSettingError,
    ObjectiveTerm,
    ObjectiveType,
    TrialCondition,
    TrialResult,
    decode_objectives_setting,
)

_DISTRIBUTIONS: Mapping[int, Distribution] = {
    api_pb2.DISTRIBUTION_UNSPECIFIED: Distribution.UNIFORM,
    api_pb2.UNIFORM: Distribution.UNIFORM,
    api_pb2.LOG_UNIFORM: Distribution.LOG_UNIFORM,
    api_pb2.NORMAL: Distribution.NORMAL,
    api_pb2.LOG_NORMAL: Distribution.LOG_NORMAL,
}

_CONDITIONS: Mapping[int, TrialCondition] = {
    api_pb2.TrialStatus.CREATED: TrialCondition.CREATED,
    api_pb2.TrialStatus.RUNNING: TrialCondition.RUNNING,
    api_pb2.TrialStatus.SUCCEEDED: TrialCondition.SUCCEEDED,
    api_pb2.TrialStatus.KILLED: TrialCondition.KILLED,
    api_pb2.TrialStatus.FAILED: TrialCondition.FAILED,
    api_pb2.TrialStatus.METRICSUNAVAILABLE: TrialCondition.METRICS_UNAVAILABLE,
    api_pb2.TrialStatus.EARLYSTOPPED: TrialCondition.EARLY_STOPPED,
    # Katib's controller sends MetricsUnavailable trials as UNKNOWN (it has no mapping)
    api_pb2.TrialStatus.UNKNOWN: TrialCondition.METRICS_UNAVAILABLE,
}

_WITH_VALUE = frozenset({api_pb2.TrialStatus.SUCCEEDED, api_pb2.TrialStatus.EARLYSTOPPED})


@dataclass(frozen=True)
class ExperimentView:
    """What the service needs of an ``api_pb2.Experiment``."""

    name: str
    space: SearchSpace
    objective: Objective
    algorithm_name: str
    settings: Mapping[str, str]
    max_trial_count: int | None
    parallel_trial_count: int | None


def spec_digest(experiment: api_pb2.Experiment) -> bytes:
    """A stable digest of the experiment spec (cache key of the service's per-experiment
    state; any change of space, objective, algorithm or counts gives a new one)."""
    return hashlib.blake2b(
        experiment.spec.SerializeToString(deterministic=True), digest_size=16
    ).digest()


def parameter_from_proto(spec: api_pb2.ParameterSpec) -> Parameter:
    """One ``ParameterSpec`` as a kernel :class:`Parameter`.

    Raises:
        InvalidRequestError: unknown type, missing or non-numeric bounds, bad step or list.
    """
    name = spec.name
    fs = spec.feasible_space
    where = f"parameter {name or '<unnamed>'}"
    try:
        distribution = _DISTRIBUTIONS[fs.distribution]
    except KeyError:
        raise InvalidRequestError(f"{where}: unknown distribution {fs.distribution}") from None
    try:
        ptype = spec.parameter_type
        if ptype == api_pb2.DOUBLE:
            low, high = _bound(fs.min, "min"), _bound(fs.max, "max")
            step = float(parse_number(fs.step)) if fs.step.strip() else None
            _no_list(fs)
            return Parameter.double(name, low, high, step, distribution)
        if ptype == api_pb2.INT:
            low_i, high_i = _integer(fs.min, "min"), _integer(fs.max, "max")
            step_i = _integer(fs.step, "step") if fs.step.strip() else 1
            _no_list(fs)
            return Parameter.integer(name, low_i, high_i, step_i, distribution)
        if ptype == api_pb2.DISCRETE:
            _no_range(fs)
            return Parameter.discrete(name, [parse_number(v) for v in fs.list])
        if ptype == api_pb2.CATEGORICAL:
            _no_range(fs)
            return Parameter.categorical(name, list(fs.list))
    except SpaceError as exc:
        message = str(exc)
        if name and message.startswith(f"{name}:"):
            message = message[len(name) + 1 :].strip()
        raise InvalidRequestError(f"{where}: {message}") from None
    except (ArithmeticError, ValueError) as exc:  # any other parse failure is the input's too
        raise InvalidRequestError(f"{where}: {type(exc).__name__}: {exc}") from None
    try:
        type_name = api_pb2.ParameterType.Name(ptype)
    except ValueError:
        type_name = str(ptype)
    raise InvalidRequestError(
        f"{where}: parameter type {type_name} is not supported "
        "(use DOUBLE, INT, DISCRETE or CATEGORICAL)"
    )


def _bound(text: str, label: str) -> float:
    if not text.strip():
        raise SpaceError(f"{label} is required")
    return float(parse_number(text))


def _integer(text: str, label: str) -> int:
    if not text.strip():
        raise SpaceError(f"{label} is required")
    number = parse_number(text)
    if isinstance(number, float):
        if not number.is_integer():
            raise SpaceError(f"{label} {text!r} is not an integer")
        number = int(number)
    return number


def _no_list(fs: api_pb2.FeasibleSpace) -> None:
    if len(fs.list):
        raise SpaceError("a double or int parameter takes min/max, not a list")


def _no_range(fs: api_pb2.FeasibleSpace) -> None:
    if fs.min.strip() or fs.max.strip() or fs.step.strip():
        raise SpaceError("a discrete or categorical parameter takes a list, not min/max/step")


def space_from_proto(spec: api_pb2.ExperimentSpec) -> SearchSpace:
    """The search space of an ``ExperimentSpec`` (NAS configs are not supported).

    Raises:
        InvalidRequestError: no parameters, a bad parameter, or duplicate names.
    """
    params = [parameter_from_proto(p) for p in spec.parameter_specs.parameters]
    if not params:
        if spec.HasField("nas_config"):
            raise InvalidRequestError(
                "nasConfig experiments are not supported by this suggestion service"
            )
        raise InvalidRequestError("the experiment has no parameters")
    try:
        return SearchSpace(tuple(params))
    except SpaceError as exc:
        raise InvalidRequestError(f"invalid search space: {exc}") from None


def objective_from_proto(
    spec: api_pb2.ObjectiveSpec, objectives_setting: str | None = None
) -> Objective:
    """The objective (the goal is None when the wire carries proto3's default 0), with the
    further objectives of a ``tunery.io/objectives`` setting value.

    Raises:
        InvalidRequestError: unknown objective type, empty metric name, or a bad
            ``tunery.io/objectives`` value (e.g. repeating the first objective).
    """
    if spec.type == api_pb2.MINIMIZE:
        otype = ObjectiveType.MINIMIZE
    elif spec.type == api_pb2.MAXIMIZE:
        otype = ObjectiveType.MAXIMIZE
    else:
        raise InvalidRequestError("objective type must be MINIMIZE or MAXIMIZE")
    if not spec.objective_metric_name:
        raise InvalidRequestError("objective metric name must not be empty")
    extra: tuple[ObjectiveTerm, ...] = ()
    if objectives_setting is not None:
        try:
            extra = decode_objectives_setting(objectives_setting)
        except ObjectivesSettingError as exc:
            raise InvalidRequestError(str(exc)) from None
        if any(t.metric_name == spec.objective_metric_name for t in extra):
            raise InvalidRequestError(
                f"{OBJECTIVES_SETTING} repeats the objective metric "
                f"{spec.objective_metric_name!r}; list only the further objectives"
            )
    additional = tuple(spec.additional_metric_names)
    additional += tuple(t.metric_name for t in extra if t.metric_name not in additional)
    return Objective(
        otype,
        spec.objective_metric_name,
        goal=spec.goal or None,
        additional_metric_names=additional,
        extra_objectives=extra,
    )


def settings_from_proto(spec: api_pb2.AlgorithmSpec) -> dict[str, str]:
    """Algorithm settings as name -> raw string.

    Raises:
        InvalidRequestError: a setting is given twice.
    """
    out: dict[str, str] = {}
    for s in spec.algorithm_settings:
        if s.name == OBJECTIVES_SETTING:
            continue  # tunery's extension, read by objective_from_proto
        if s.name in out:
            raise InvalidRequestError(f"algorithm setting {s.name} is given more than once")
        out[s.name] = s.value
    return out


def _objectives_setting(spec: api_pb2.AlgorithmSpec) -> str | None:
    values = [s.value for s in spec.algorithm_settings if s.name == OBJECTIVES_SETTING]
    if len(values) > 1:
        raise InvalidRequestError(
            f"algorithm setting {OBJECTIVES_SETTING} is given more than once"
        )
    return values[0] if values else None


def experiment_from_proto(experiment: api_pb2.Experiment) -> ExperimentView:
    """Everything the service needs of an ``Experiment``.

    Raises:
        InvalidRequestError: see the functions above; also an empty algorithm name.
    """
    spec = experiment.spec
    if not spec.algorithm.algorithm_name:
        raise InvalidRequestError("algorithm name must not be empty")
    settings = settings_from_proto(spec.algorithm)
    space = space_from_proto(spec)
    conditions = settings.pop(CONDITIONS_SETTING, None)
    if conditions is not None:
        try:
            space = apply_conditions(space.parameters, conditions)
        except SpaceError as exc:
            raise InvalidRequestError(f"invalid search space: {exc}") from None
    objective = objective_from_proto(spec.objective, _objectives_setting(spec.algorithm))
    constraints = settings.pop(CONSTRAINTS_SETTING, None)
    if constraints is not None:
        try:
            names = decode_constraints(constraints)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
        missing = [n for n in names if n not in objective.metric_names]
        if missing:
            raise InvalidRequestError(
                f"constraint metric(s) {missing} are not additional metrics of the objective"
            )
        objective = dataclasses.replace(objective, constraints=names)
    return ExperimentView(
        name=experiment.name,
        space=space,
        objective=objective,
        algorithm_name=spec.algorithm.algorithm_name,
        settings=settings,
        max_trial_count=spec.max_trial_count or None,
        parallel_trial_count=spec.parallel_trial_count or None,
    )


def trial_from_proto(
    trial: api_pb2.Trial,
    space: SearchSpace,
    metric_name: str,
    constraints: Sequence[str] = (),
    objective_metrics: Sequence[str] = (),
) -> TrialResult:
    """A ``Trial`` proto as a :class:`TrialResult` (value only for completed trials; the
    constraint values, NaN where not reported; for a multi-objective experiment,
    ``objective_metrics`` names every objective's metric and ``values`` holds them when all are
    present and finite).

    Raises:
        InvalidRequestError: the trial's assignment does not fit the search space.
    """
    wire = {a.name: a.value for a in trial.spec.parameter_assignments.assignments}
    try:
        assignment = space.parse_assignment(wire)
    except (ArithmeticError, ValueError) as exc:  # SpaceError, or any other parse failure
        raise InvalidRequestError(f"trial {trial.name or '<unnamed>'}: {exc}") from None
    condition = _CONDITIONS.get(trial.status.condition, TrialCondition.METRICS_UNAVAILABLE)
    value = None
    constraint_values: tuple[float, ...] = ()
    values: tuple[float, ...] | None = None
    if trial.status.condition in _WITH_VALUE:
        metrics = trial.status.observation.metrics
        value = _metric_value(metrics, metric_name)
        constraint_values = tuple(
            math.nan if (v := _metric_value(metrics, name)) is None else v for name in constraints
        )
        if len(objective_metrics) > 1 and value is not None:
            found = [_metric_value(metrics, name) for name in objective_metrics]
            if all(v is not None for v in found):
                values = tuple(v for v in found if v is not None)
    labels = dict(trial.spec.labels) if trial.spec.labels else {}
    return TrialResult(
        trial.name,
        assignment,
        condition,
        value,
        values,
        labels=labels,
        constraint_values=constraint_values,
    )


def _metric_value(metrics: Iterable[api_pb2.Metric], name: str) -> float | None:
    for metric in metrics:
        if metric.name == name:
            try:
                value = float(metric.value)
            except ValueError:
                return None
            return value if math.isfinite(value) else None
    return None


class TrialConverter:
    """Converts trials, handing back the same objects for trials that did not change.

    Every trial given is converted (the caller decides what needs converting: the service
    passes only the trials that are new or changed since the previous request, see
    :mod:`suggestion.wire`). When a trial of the same name was converted before, its
    :class:`TrialResult` is reused if nothing changed, and its assignment object is reused if
    only the state did: the algorithms' caches compare both by identity. Not thread-safe: the
    service holds the experiment's lock.
    """

    def __init__(
        self,
        space: SearchSpace,
        metric_name: str,
        constraints: Sequence[str] = (),
        objective_metrics: Sequence[str] = (),
    ) -> None:
        self.space = space
        self.metric_name = metric_name
        self.constraints = tuple(constraints)
        self.objective_metrics = tuple(objective_metrics)
        self._cache: dict[str, TrialResult] = {}

    def _one(self, trial: api_pb2.Trial) -> TrialResult:
        result = trial_from_proto(
            trial, self.space, self.metric_name, self.constraints, self.objective_metrics
        )
        if not result.name:
            return result
        hit = self._cache.get(result.name)
        if hit is not None and hit.assignment == result.assignment:
            if (
                hit.condition is result.condition
                and hit.value == result.value
                and hit.values == result.values
                and hit.labels == result.labels
                and _same(hit.constraint_values, result.constraint_values)
            ):
                return hit
            result = dataclasses.replace(result, assignment=hit.assignment)
        self._cache[result.name] = result
        return result

    def convert(self, trials: Sequence[api_pb2.Trial]) -> list[TrialResult]:
        """Convert ``trials``; forgets the trials of earlier calls that are not among them."""
        out = [self._one(t) for t in trials]
        self._cache = {t.name: t for t in out if t.name}
        return out

    def convert_new(self, trials: Sequence[api_pb2.Trial]) -> list[TrialResult]:
        """Convert some of a request's trials (the others are known unchanged)."""
        return [self._one(t) for t in trials]


def _same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """Equal constraint values (NaN equal to NaN)."""
    if len(a) != len(b):
        return False
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def assignments_to_proto(
    space: SearchSpace,
    assignments: Sequence[Assignment],
    trials: Sequence[SuggestedTrial] | None = None,
) -> list[api_pb2.GetSuggestionsReply.ParameterAssignments]:
    """Assignments as the reply's wire messages (values formatted by the space), with the
    trial name and labels of ``trials[i]`` where an algorithm chose them (pbt does)."""
    out = []
    for i, assignment in enumerate(assignments):
        wire = space.format_assignment(assignment)
        extra = trials[i] if trials is not None else None
        out.append(
            api_pb2.GetSuggestionsReply.ParameterAssignments(
                assignments=[
                    api_pb2.ParameterAssignment(name=name, value=value)
                    for name, value in wire.items()
                ],
                trial_name=extra.name if extra is not None else "",
                labels=dict(extra.labels) if extra is not None else {},
            )
        )
    return out
