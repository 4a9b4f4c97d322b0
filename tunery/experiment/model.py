"""Experiment spec model: Katib's ``kubeflow.org/v1beta1`` Experiment, parsed, defaulted, checked.

Kernel module: imports only ``tunery.space``, ``tunery.trials`` and its sibling modules in
``tunery.experiment`` (base, errors, collector, template, crd). Called by the CLI and SDK
(``tunery run experiment.yaml``), the controller and the Kubernetes operator (which store and
run an :class:`Experiment`), and the CRD generator (:func:`crd_schema`).

:func:`load_experiment` reads YAML text, a file or a mapping (through
:mod:`tunery.experiment.reading`, which bounds the cost and locates syntax problems by line and
column) and returns a frozen :class:`Experiment`, or raises :class:`ExperimentError` listing
*every* problem as ``path: message`` lines. Like Katib's admission webhooks it first applies
Katib's defaults (parallelTrialCount 3, resumePolicy Never, metric strategies, trial-template
conditions by job kind, metrics-collector paths, uniform distributions), then validates.
Validation covers every Katib webhook rule that needs no cluster, plus tunery's stricter rules:
numbers parse and are finite, min < max, step > 0, int bounds are integers within ±2**53, a
double range and its step count fit in a double, trial counts are int32 as in Katib, the
container fields the local runner reads have their Kubernetes types, lists are non-empty and
duplicate-free, unknown fields are rejected (except inside free-form Kubernetes objects:
``trialSpec``, ``customCollector``, ``httpGet``, ``status``), every ``${trialParameters.x}``
placeholder is defined and every trial parameter used, and ``primaryContainerName`` names a
container.

Problems are collected, not raised one by one: type errors, unknown fields and rule checks of
every node are reported together, with cross-field rules run on whichever fields are valid.

Lenient where Katib's Go types would only be pedantic: YAML numbers given where Katib wants
strings (feasible-space values, setting values) are read as those strings, a numeric string
``goal`` as its number, and Kubernetes server-set metadata (``uid``, ``resourceVersion``...) and
``status`` are accepted and kept, so an exported custom resource loads.

Not checked here: the namespace label Katib requires (tunery needs none), the full batch/v1 Job
schema, and placeholders of ``configMap`` templates (the ConfigMap is read by whoever renders
trials, not here). Algorithm and early-stopping settings are validated by their services; pass
``algorithm_names`` / ``early_stopping_names`` to reject unknown names early.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from tunery.experiment import crd, reading
from tunery.experiment.base import FreeForm, Goal, Node, Text, choice, plain
from tunery.experiment.collector import (
    DEFAULT_METRICS_FILE_PATH,
    DEFAULT_PROMETHEUS_PATH,
    DEFAULT_PROMETHEUS_PORT,
    DEFAULT_TFEVENT_DIR_PATH,
    CollectorKind,
    CollectorSpec,
    FileFormat,
    FileSystemKind,
    FileSystemPath,
    FilterSpec,
    MetricsCollectorSpec,
    SourceSpec,
)
from tunery.experiment.errors import (
    ExperimentError,
    FieldError,
    Problems,
    custom_error,
    did_you_mean,
    show,
    translate,
)
from tunery.experiment.template import (
    JOB_FAILURE_CONDITION,
    JOB_SUCCESS_CONDITION,
    KUBEFLOW_JOB_FAILURE_CONDITION,
    KUBEFLOW_JOB_KINDS,
    KUBEFLOW_JOB_PRIMARY_POD_LABELS,
    KUBEFLOW_JOB_SUCCESS_CONDITION,
    TRAINJOB_PRIMARY_POD_LABELS,
    ConfigMapSource,
    TrialParameterSpec,
    TrialTemplate,
    looks_like_meta_reference,
    scan_placeholders,
)
from tunery.space import (
    Condition,
    Distribution,
    Parameter,
    ParameterType,
    SearchSpace,
    SpaceError,
)
from tunery.trials import MetricStrategy, Objective, ObjectiveTerm, ObjectiveType

__all__ = [
    "API_VERSION",
    "DEFAULT_METRICS_FILE_PATH",
    "DEFAULT_PARALLEL_TRIAL_COUNT",
    "DEFAULT_PROMETHEUS_PATH",
    "DEFAULT_PROMETHEUS_PORT",
    "DEFAULT_TFEVENT_DIR_PATH",
    "INT32_MAX",
    "INT_PARAMETER_LIMIT",
    "JOB_FAILURE_CONDITION",
    "JOB_SUCCESS_CONDITION",
    "KIND",
    "KUBEFLOW_JOB_FAILURE_CONDITION",
    "KUBEFLOW_JOB_KINDS",
    "KUBEFLOW_JOB_PRIMARY_POD_LABELS",
    "KUBEFLOW_JOB_SUCCESS_CONDITION",
    "MAX_NAME_LENGTH",
    "TRAINJOB_PRIMARY_POD_LABELS",
    "AlgorithmSetting",
    "AlgorithmSpec",
    "CollectorKind",
    "CollectorSpec",
    "ConfigMapSource",
    "Distribution",
    "EarlyStoppingSetting",
    "EarlyStoppingSpec",
    "Experiment",
    "ExperimentError",
    "ExperimentSpec",
    "FeasibleSpace",
    "FieldError",
    "FileFormat",
    "FileSystemKind",
    "FileSystemPath",
    "FilterSpec",
    "GraphConfig",
    "MetricStrategy",
    "MetricStrategySpec",
    "MetricsCollectorSpec",
    "NasConfig",
    "ObjectMeta",
    "ObjectiveItem",
    "ObjectiveSpec",
    "ObjectiveType",
    "Operation",
    "ParameterSpec",
    "ParameterType",
    "ResumePolicy",
    "SourceSpec",
    "TrialParameterSpec",
    "TrialTemplate",
    "crd_schema",
    "did_you_mean",
    "load_experiment",
]

API_VERSION = "kubeflow.org/v1beta1"
KIND = "Experiment"

DEFAULT_PARALLEL_TRIAL_COUNT = 3

MAX_NAME_LENGTH = 40
INT32_MAX = 2**31 - 1
"""The largest trial count (parallelTrialCount, maxTrialCount...): Katib's counts are int32."""
INT_PARAMETER_LIMIT = 2**53
"""int parameters' bounds lie within ±2**53: the algorithms sample them as doubles."""
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ResumePolicy(enum.StrEnum):
    NEVER = "Never"
    LONG_RUNNING = "LongRunning"
    FROM_VOLUME = "FromVolume"


# -- metadata ---------------------------------------------------------------------------------


class ObjectMeta(Node):
    """Kubernetes object metadata. Server-populated fields are accepted and kept as given."""

    name: str
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generate_name: str | None = None
    uid: Any = None
    resource_version: Any = None
    generation: Any = None
    creation_timestamp: Any = None
    deletion_timestamp: Any = None
    deletion_grace_period_seconds: Any = None
    finalizers: Any = None
    owner_references: Any = None
    managed_fields: Any = None
    self_link: Any = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise custom_error(
                f"{show(name)} is not a valid experiment name: use lower-case letters, digits "
                'and "-", starting with a letter and ending with a letter or digit '
                '(e.g. "mnist-random")'
            )
        if len(name) > MAX_NAME_LENGTH:
            raise custom_error(
                f"{show(name)} is {len(name)} characters long; experiment names are limited "
                f"to {MAX_NAME_LENGTH}"
            )
        return name

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, namespace: str | None) -> str | None:
        if namespace is not None and (len(namespace) > 63 or not _DNS_LABEL.match(namespace)):
            raise custom_error(
                f"{show(namespace)} is not a valid namespace: use at most 63 lower-case "
                'letters, digits and "-", starting and ending with a letter or digit'
            )
        return namespace


# -- parameters -------------------------------------------------------------------------------

_UNKNOWN_TYPE = (
    "is Katib's placeholder type and cannot be tuned; use one of: double, int, discrete, "
    "categorical"
)
_UNKNOWN_DISTRIBUTION = (
    "is Katib's placeholder distribution and cannot be sampled; use one of: uniform, "
    "logUniform, normal, logNormal"
)


class FeasibleSpace(Node):
    """Feasible values of one parameter. Katib writes every value as a string."""

    low: Text | None = Field(None, alias="min")
    """Lower bound (double, int)."""
    high: Text | None = Field(None, alias="max")
    """Upper bound (double, int)."""
    step: Text | None = None
    """Grid step (double, int); ints step by 1 when it is absent."""
    values: tuple[Text, ...] | None = Field(None, alias="list")
    """The values of a discrete (numbers) or categorical (strings) parameter."""
    distribution: Annotated[
        Distribution,
        choice(
            Distribution,
            "distribution",
            empty=Distribution.UNIFORM,
            hints={"unknown": _UNKNOWN_DISTRIBUTION},
        ),
    ] = Distribution.UNIFORM
    """How values are sampled within [min, max]."""

    @property
    def is_empty(self) -> bool:
        return self.low is None and self.high is None and self.step is None and self.values is None


class ParameterCondition(Node):
    """tunery extension: the parameter is active only when ``parameter`` (another parameter)
    is active and takes one of ``values``; an inactive parameter is absent from the trial."""

    parameter: str
    """The parent parameter's name."""
    values: tuple[Text, ...]
    """Values of the parent (as strings, like feasibleSpace.list) that activate this one."""


class ParameterSpec(Node):
    """One hyperparameter to tune."""

    name: str
    parameter_type: Annotated[
        ParameterType, choice(ParameterType, "parameter type", hints={"unknown": _UNKNOWN_TYPE})
    ]
    feasible_space: FeasibleSpace
    condition: ParameterCondition | None = None
    """tunery extension: active only when another parameter takes given values."""

    _requires: ClassVar[tuple[str, ...]] = ("parameterType", "feasibleSpace")

    def _check(self, problems: Problems) -> None:
        found = Problems()
        _check_parameter(self, found)
        if not found and self.name is not None:  # keep search_space() total, whatever happens
            try:
                self.to_parameter()
            except SpaceError as exc:
                found.add(str(exc), "feasibleSpace")
        problems.items.extend(found.items)

    def to_parameter(self) -> Parameter:
        """The search-space parameter: strings parsed to numbers, int step defaulting to 1."""
        fs = self.feasible_space
        kind = self.parameter_type
        if kind is ParameterType.CATEGORICAL:
            return Parameter.categorical(self.name, fs.values or ())
        if kind is ParameterType.DISCRETE:
            return Parameter.discrete(self.name, [_number(v, False)[0] for v in fs.values or ()])
        integer = kind is ParameterType.INT
        low, high = (_number(v or "", integer)[0] for v in (fs.low, fs.high))
        step = None if fs.step is None else _number(fs.step, integer)[0]
        if integer:
            return Parameter.integer(
                self.name, int(low), int(high), int(step or 1), fs.distribution
            )
        return Parameter.double(self.name, low, high, step, fs.distribution)


def _number(text: str, integer: bool) -> tuple[Any, str | None]:
    """(value, None) for a finite number (an ``int`` when ``integer``), else (None, message)."""
    stripped = text.strip()
    if "_" not in stripped:
        try:
            number = int(stripped)
        except ValueError:
            pass
        else:
            if not integer and not _fits_a_double(number):
                return None, f"{show(text)} is too large (beyond a double's range)"
            return number, None
    try:
        value = float(stripped) if "_" not in stripped else None
    except ValueError:
        value = None
    if value is None:
        return None, f"{show(text)} is not a number"
    if not math.isfinite(value):
        return None, f"{show(text)} is not a finite number"
    if integer:
        return None, f"{show(text)} is not an integer"
    return value, None


def _fits_a_double(number: int) -> bool:
    try:
        float(number)
    except OverflowError:
        return False
    return True


def _check_parameter(p: ParameterSpec, problems: Problems) -> None:
    if not p.name:
        problems.add("must not be empty", "name")
    fs = p.feasible_space
    if fs.is_empty:
        problems.add(
            "is empty: give min and max (double, int) or list (discrete, categorical)",
            "feasibleSpace",
        )
        return
    if p.parameter_type in (ParameterType.DOUBLE, ParameterType.INT):
        _check_range(p, problems)
    else:
        _check_list(p, problems)


def _check_range(p: ParameterSpec, problems: Problems) -> None:
    fs = p.feasible_space
    kind = p.parameter_type.value
    integer = p.parameter_type is ParameterType.INT
    if fs.values is not None:
        problems.add(
            f"is not used by {kind} parameters (they take min, max and an optional step)",
            "feasibleSpace",
            "list",
        )
    parsed: dict[str, Any] = {}
    for label, text in (("min", fs.low), ("max", fs.high), ("step", fs.step)):
        if text is None:
            if label != "step":
                problems.add(f"is required for {kind} parameters", "feasibleSpace", label)
            continue
        value, error = _number(text, integer)
        if error is None and integer and abs(value) > INT_PARAMETER_LIMIT:
            error = (
                f"{show(text)} is out of range: int parameters lie within "
                f"±{INT_PARAMETER_LIMIT} (2**53; the algorithms sample them as doubles)"
            )
        if error is not None:
            problems.add(error, "feasibleSpace", label)
        else:  # a double's bounds are compared and subtracted as doubles (never as huge ints)
            parsed[label] = value if integer else float(value)
    low, high, step = parsed.get("min"), parsed.get("max"), parsed.get("step")
    if not integer and low is not None and high is not None and not math.isfinite(high - low):
        problems.add(
            f"the range from min {show(fs.low)} to max {show(fs.high)} is too wide to sample: "
            "max - min overflows a double",
            "feasibleSpace",
        )
        return
    if low is not None and high is not None and (low > high or (low == high and not integer)):
        problems.add(
            f"{show(fs.low)} must be less than max {show(fs.high)}", "feasibleSpace", "min"
        )
    if step is not None:
        if step <= 0:
            problems.add(f"{show(fs.step)} must be greater than 0", "feasibleSpace", "step")
        elif low is not None and high is not None and low < high and step > high - low:
            problems.add(
                f"{show(fs.step)} is larger than the range from min {show(fs.low)} to max "
                f"{show(fs.high)}",
                "feasibleSpace",
                "step",
            )
        elif (
            not integer
            and low is not None
            and high is not None
            and low < high
            and not math.isfinite((high - low) / step)
        ):
            problems.add(
                f"{show(fs.step)} is too small for the range from min {show(fs.low)} to max "
                f"{show(fs.high)}: the number of steps overflows a double",
                "feasibleSpace",
                "step",
            )
    if fs.distribution.is_log and low is not None and low <= 0:
        problems.add(
            f"{show(fs.low)} must be greater than 0 for distribution {fs.distribution}",
            "feasibleSpace",
            "min",
        )


def _check_list(p: ParameterSpec, problems: Problems) -> None:
    fs = p.feasible_space
    kind = p.parameter_type.value
    for label, text in (("min", fs.low), ("max", fs.high), ("step", fs.step)):
        if text is not None:
            problems.add(
                f"is not used by {kind} parameters (they take a list of values)",
                "feasibleSpace",
                label,
            )
    if fs.distribution is not Distribution.UNIFORM:
        problems.add(
            f"{show(fs.distribution.value)} applies only to double and int parameters",
            "feasibleSpace",
            "distribution",
        )
    if fs.values is None:
        problems.add(f"is required for {kind} parameters", "feasibleSpace", "list")
        return
    if not fs.values:
        problems.add("must not be empty", "feasibleSpace", "list")
        return
    first: dict[object, int] = {}
    for i, text in enumerate(fs.values):
        key: object = text
        if p.parameter_type is ParameterType.DISCRETE:
            value, error = _number(text, False)
            if error is not None:
                problems.add(error, "feasibleSpace", "list", i)
                continue
            key = float(value)
        if key in first:
            problems.add(
                f"{show(text)} is listed twice (also at list[{first[key]}])",
                "feasibleSpace",
                "list",
                i,
            )
        else:
            first[key] = i


# -- objective, algorithm, early stopping -----------------------------------------------------


class MetricStrategySpec(Node):
    """Which of a metric's reported values counts: its min, max or latest."""

    name: str
    value: Annotated[MetricStrategy, choice(MetricStrategy, "metric strategy")]


def _metric_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a metric's name (None when it can): collectors match names
    exactly in ``name=value`` output, so blank and padded names could never be reported."""
    if not name.strip():
        return "must not be empty"
    if name != name.strip():
        return f"{show(name)} must not begin or end with whitespace"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return f"{show(name)} must not contain control characters (a NUL, a line break…)"
    return None


class ObjectiveItem(Node):
    """One objective of a multi-objective experiment (tunery's extension of Katib's
    objective, docs/multi-objective.md)."""

    name: str
    type: Annotated[ObjectiveType, choice(ObjectiveType, "objective type")]
    goal: Goal | None = None

    def _check(self, problems: Problems) -> None:
        if (problem := _metric_name_problem(self.name)) is not None:
            problems.add(problem, "name")


class ObjectiveSpec(Node):
    """What to optimise."""

    _requires: ClassVar[tuple[str, ...]] = ("objectiveMetricName",)
    """The cross-field checks compare every metric name with it."""

    type: Annotated[ObjectiveType, choice(ObjectiveType, "objective type")]
    goal: Goal | None = None
    """Stop the experiment once the objective reaches this value."""
    objective_metric_name: str
    additional_metric_names: tuple[str, ...] = ()
    """Other metrics to collect (not optimised)."""
    metric_strategies: tuple[MetricStrategySpec, ...] = ()
    """Per-metric strategy; defaulted to the objective's direction (min or max)."""
    constraints: tuple[str, ...] = ()
    """tunery extension: metrics a trial must keep <= 0 to be feasible (collected as additional
    metrics, strategy latest unless given); infeasible trials are never the best."""
    objectives: tuple[ObjectiveItem, ...] | None = None
    """tunery's multi-objective extension: every objective, the first being Katib's
    ``objectiveMetricName``/``type``/``goal`` (defaulted from it when absent); the others are
    defaulted into ``additionalMetricNames`` so every collector records them."""

    @classmethod
    def _defaults(cls, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Katib's defaulting: the objective metric and every additional metric without a
        strategy get the objective direction's (min for minimize, max for maximize).
        Constraint metrics (tunery) join the additional metrics with strategy latest.

        With ``objectives`` (multi-objective): Katib's fields default from the first one, the
        other objectives join ``additionalMetricNames``, and their strategies default to their
        own direction."""
        data = _multi_objective_defaults(_constraint_defaults(data))
        name = data.get("objectiveMetricName")
        additional = data.get("additionalMetricNames") or []
        strategies = data.get("metricStrategies") or []
        if not isinstance(strategies, list | tuple) or not isinstance(additional, list | tuple):
            return data
        objective_type = data.get("type")
        direction = {"minimize": "min", "maximize": "max"}.get(
            objective_type if isinstance(objective_type, str) else "", "latest"
        )
        own = (
            {
                o["name"]: {"minimize": "min", "maximize": "max"}.get(o["type"], direction)
                for o in (data.get("objectives") or [])
                if isinstance(o, Mapping)
                and isinstance(o.get("name"), str)
                and isinstance(o.get("type"), str)  # a wrong type is reported at its path
            }
            if isinstance(data.get("objectives"), list | tuple)
            else {}
        )
        have = {
            s.get("name")
            for s in strategies
            if isinstance(s, Mapping) and isinstance(s.get("name"), str)
        }
        added = [
            {"name": metric, "value": own.get(metric, direction)}
            for metric in [name, *additional]
            if isinstance(metric, str) and metric and metric not in have
        ]
        added = [s for i, s in enumerate(added) if s not in added[:i]]
        if not added:
            return data
        return {**data, "metricStrategies": [*strategies, *added]}

    def _check(self, problems: Problems) -> None:
        name = self.objective_metric_name
        if (problem := _metric_name_problem(name)) is not None:
            problems.add(problem, "objectiveMetricName")
        additional = self.additional_metric_names or ()
        first: dict[str, int] = {}
        for i, metric in enumerate(additional):
            if (problem := _metric_name_problem(metric)) is not None:
                problems.add(problem, "additionalMetricNames", i)
            elif metric == name:
                problems.add(
                    f"{show(metric)} is the objective metric; list only other metrics here",
                    "additionalMetricNames",
                    i,
                )
            elif metric in first:
                problems.add(
                    f"{show(metric)} is listed twice "
                    f"(also at additionalMetricNames[{first[metric]}])",
                    "additionalMetricNames",
                    i,
                )
            else:
                first[metric] = i
        metrics = list(dict.fromkeys([name, *additional]))
        seen: dict[str, int] = {}
        for i, strategy in enumerate(self.metric_strategies or ()):
            if strategy.name not in metrics:
                problems.add(
                    f"{show(strategy.name)} is neither the objective metric nor an additional "
                    f"metric (metrics: {', '.join(metrics)})"
                    f"{did_you_mean(strategy.name, metrics)}",
                    "metricStrategies",
                    i,
                    "name",
                )
            elif strategy.name in seen:
                problems.add(
                    f"{show(strategy.name)} already has a strategy "
                    f"(metricStrategies[{seen[strategy.name]}])",
                    "metricStrategies",
                    i,
                    "name",
                )
            else:
                seen[strategy.name] = i
        firsts: dict[str, int] = {}
        for i, constraint in enumerate(self.constraints or ()):
            if (problem := _metric_name_problem(constraint)) is not None:
                problems.add(problem, "constraints", i)
            elif constraint == name:
                problems.add(
                    f"{show(constraint)} is the objective metric; a constraint is another "
                    "metric (feasible when <= 0)",
                    "constraints",
                    i,
                )
            elif constraint in firsts:
                problems.add(
                    f"{show(constraint)} is listed twice "
                    f"(also at constraints[{firsts[constraint]}])",
                    "constraints",
                    i,
                )
            else:
                firsts[constraint] = i

        self._check_objectives(problems)

    def _check_objectives(self, problems: Problems) -> None:
        items = self.objectives
        if items is None:
            return
        if len(items) < 2:
            problems.add(
                "must list at least two objectives (use objectiveMetricName and type for one)",
                "objectives",
            )
            return
        first = items[0]
        for field_name, mine, theirs in (
            ("objectiveMetricName", self.objective_metric_name, first.name),
            ("type", self.type, first.type),
            ("goal", self.goal, first.goal),
        ):
            if mine != theirs:
                problems.add(
                    f"{show(mine)} differs from objectives[0] ({show(theirs)}): Katib's "
                    "objective is the first of objectives; give it once",
                    field_name,
                )
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.name in seen:
                problems.add(
                    f"{show(item.name)} is listed twice (also at objectives[{seen[item.name]}])",
                    "objectives",
                    i,
                    "name",
                )
            else:
                seen[item.name] = i
        strategies = {s.name: s.value for s in self.metric_strategies or ()}
        for i, item in enumerate(items):
            minimize = item.type is ObjectiveType.MINIMIZE
            wrong = MetricStrategy.MAX if minimize else MetricStrategy.MIN
            if strategies.get(item.name) is wrong:
                right = "min" if minimize else "max"
                problems.add(
                    f"metric strategy {wrong.value} of {show(item.name)} works against its "
                    f"direction ({item.type.value}); use {right} or latest",
                    "objectives",
                    i,
                    "name",
                )

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (self.objective_metric_name, *self.additional_metric_names)


def _constraint_defaults(data: Mapping[str, Any]) -> Mapping[str, Any]:
    constraints = data.get("constraints")
    additional = data.get("additionalMetricNames") or []
    strategies = data.get("metricStrategies") or []
    if (
        not constraints
        or not isinstance(constraints, list | tuple)
        or not isinstance(additional, list | tuple)
        or not isinstance(strategies, list | tuple)
    ):
        return data
    name = data.get("objectiveMetricName")
    have = {s.get("name") for s in strategies if isinstance(s, Mapping)}
    added = [
        c
        for i, c in enumerate(constraints)
        if isinstance(c, str)
        and c
        and c != name
        and c not in additional
        and c not in constraints[:i]
    ]
    latest = [
        {"name": c, "value": "latest"}
        for i, c in enumerate(constraints)
        if isinstance(c, str) and c and c != name and c not in have and c not in constraints[:i]
    ]
    if not added and not latest:
        return data
    return {
        **data,
        "additionalMetricNames": [*additional, *added],
        "metricStrategies": [*strategies, *latest],
    }


def _multi_objective_defaults(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Katib's objective fields from ``objectives[0]`` where absent; the other objectives'
    metrics appended to ``additionalMetricNames``."""
    items = data.get("objectives")
    if not isinstance(items, list | tuple) or not items:
        return data
    out = dict(data)
    first = items[0]
    if isinstance(first, Mapping):
        for key, source in (("objectiveMetricName", "name"), ("type", "type"), ("goal", "goal")):
            if out.get(key) is None and first.get(source) is not None:
                out[key] = first[source]
    additional = out.get("additionalMetricNames") or []
    if not isinstance(additional, list | tuple):
        return out
    extra = [
        o["name"]
        for o in items[1:]
        if isinstance(o, Mapping)
        and isinstance(o.get("name"), str)
        and o["name"]
        and o["name"] not in additional
        and o["name"] != out.get("objectiveMetricName")
    ]
    if extra:
        out["additionalMetricNames"] = [*additional, *dict.fromkeys(extra)]
    return out


class AlgorithmSetting(Node):
    """One algorithm setting; values are strings as on Katib's wire."""

    name: str
    value: Text


class EarlyStoppingSetting(AlgorithmSetting):
    """One early-stopping setting."""


def _check_settings(
    settings: tuple[AlgorithmSetting, ...], field: str, problems: Problems
) -> None:
    first: dict[str, int] = {}
    for i, setting in enumerate(settings):
        if not setting.name:
            problems.add("must not be empty", field, i, "name")
        elif setting.name in first:
            problems.add(
                f"{show(setting.name)} is set twice (also at {field}[{first[setting.name]}])",
                field,
                i,
                "name",
            )
        else:
            first[setting.name] = i


_NAS_ALGORITHMS = frozenset({"enas", "darts"})


def _check_algorithm_name(name: str, info: ValidationInfo, context_key: str, what: str) -> str:
    if not name:
        raise custom_error("must not be empty")
    known = (info.context or {}).get(context_key)
    if known is not None and name not in known and name in _NAS_ALGORITHMS:
        raise custom_error(
            f"{show(name)} is one of Katib's neural architecture search (NAS) algorithms; "
            "tunery does not support NAS (README: Katib features)"
        )
    if known is not None and name not in known:
        names = sorted(known)
        raise custom_error(
            f"{show(name)} is not a known {what} (known: {', '.join(names)})"
            f"{did_you_mean(name, names)}"
        )
    return name


class AlgorithmSpec(Node):
    """The suggestion algorithm and its settings."""

    algorithm_name: str
    algorithm_settings: tuple[AlgorithmSetting, ...] = ()

    @field_validator("algorithm_name")
    @classmethod
    def _check_name(cls, name: str, info: ValidationInfo) -> str:
        return _check_algorithm_name(name, info, "algorithm_names", "algorithm")

    def _check(self, problems: Problems) -> None:
        _check_settings(self.algorithm_settings or (), "algorithmSettings", problems)

    @property
    def settings(self) -> dict[str, str]:
        return {s.name: s.value for s in self.algorithm_settings}


class EarlyStoppingSpec(Node):
    """The early-stopping algorithm (e.g. medianstop) and its settings."""

    algorithm_name: str
    algorithm_settings: tuple[EarlyStoppingSetting, ...] = ()

    @field_validator("algorithm_name")
    @classmethod
    def _check_name(cls, name: str, info: ValidationInfo) -> str:
        return _check_algorithm_name(
            name, info, "early_stopping_names", "early-stopping algorithm"
        )

    def _check(self, problems: Problems) -> None:
        _check_settings(self.algorithm_settings or (), "algorithmSettings", problems)

    @property
    def settings(self) -> dict[str, str]:
        return {s.name: s.value for s in self.algorithm_settings}


# -- NAS (schema only) ------------------------------------------------------------------------


class GraphConfig(Node):
    num_layers: StrictInt | None = None
    input_sizes: tuple[StrictInt, ...] | None = None
    output_sizes: tuple[StrictInt, ...] | None = None


class Operation(Node):
    operation_type: str | None = None
    parameters: tuple[ParameterSpec, ...] | None = None


class NasConfig(Node):
    """Katib's neural architecture search config: accepted by the schema, not supported."""

    graph_config: GraphConfig | None = None
    operations: tuple[Operation, ...] | None = None


# -- spec and experiment ----------------------------------------------------------------------


class ExperimentSpec(Node):
    """The Experiment's spec: search space, objective, algorithm, trials, budget."""

    parameters: tuple[ParameterSpec, ...] | None = None
    objective: ObjectiveSpec
    algorithm: AlgorithmSpec
    early_stopping: EarlyStoppingSpec | None = None
    trial_template: TrialTemplate
    parallel_trial_count: StrictInt = DEFAULT_PARALLEL_TRIAL_COUNT
    """Trials run at once."""
    max_trial_count: StrictInt | None = None
    """Trials to run in total (unlimited when absent)."""
    max_failed_trial_count: StrictInt | None = None
    """Failed trials that fail the experiment (unlimited when absent)."""
    metrics_collector_spec: MetricsCollectorSpec = Field(
        default_factory=lambda: MetricsCollectorSpec.model_validate({})
    )
    nas_config: NasConfig | None = None
    resume_policy: Annotated[
        ResumePolicy, choice(ResumePolicy, "resume policy", empty=ResumePolicy.NEVER)
    ] = ResumePolicy.NEVER

    @classmethod
    def _defaults(cls, data: Mapping[str, Any]) -> Mapping[str, Any]:
        return _spec_defaults(data)

    @classmethod
    def _raw_checks(cls, original: Mapping[str, Any], data: Mapping[str, Any]) -> Problems:
        """Rules spanning several fields, read from the raw (defaulted) spec so that they are
        reported even when some other field of the spec is invalid."""
        return _cross_problems(original, data)

    @field_validator("parallel_trial_count", "max_trial_count")
    @classmethod
    def _check_positive(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise custom_error(f"{show(value)} must be greater than 0")
        return _check_int32(value)

    @field_validator("max_failed_trial_count")
    @classmethod
    def _check_max_failed(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise custom_error(f"{show(value)} must not be negative")
        return _check_int32(value)

    def _check(self, problems: Problems) -> None:
        parameters = self.parameters or ()
        found = Problems()
        _check_conditions(parameters, found)
        if not found:
            _check_conditional_placeholders(parameters, self.trial_template, found)
        problems.items.extend(found.items)

    def search_space(self) -> SearchSpace:
        """The typed search space of ``parameters`` (conditions included)."""
        plain = {p.name: p.to_parameter() for p in self.parameters or ()}
        out = []
        for spec in self.parameters or ():
            param = plain[spec.name]
            c = spec.condition
            if c is not None:
                parent = plain[c.parameter]
                values = tuple(parent.parse(v) for v in c.values)
                param = dataclasses.replace(param, condition=Condition(parent.name, values))
            out.append(param)
        return SearchSpace(tuple(out))

    def to_objective(self) -> Objective:
        """The kernel Objective, with every metric's (defaulted) strategy."""
        o = self.objective
        return Objective(
            type=o.type,
            metric_name=o.objective_metric_name,
            goal=o.goal,
            additional_metric_names=o.additional_metric_names,
            strategies={s.name: s.value for s in o.metric_strategies},
            constraints=o.constraints,
            extra_objectives=tuple(
                ObjectiveTerm(item.name, item.type, item.goal) for item in (o.objectives or ())[1:]
            ),
        )


def _check_conditions(parameters: Sequence[ParameterSpec], problems: Problems) -> None:
    """Each condition names another parameter, values of its space, and no cycle."""
    by_name = {p.name: p for p in parameters if p.name}
    names = list(by_name)
    for i, p in enumerate(parameters):
        c = p.condition
        if c is None:
            continue
        at = ("parameters", i, "condition")
        if c.parameter == p.name:
            problems.add("a parameter cannot be conditional on itself", *at, "parameter")
            continue
        parent_spec = by_name.get(c.parameter)
        if parent_spec is None:
            problems.add(
                f"{show(c.parameter)} is not a parameter in spec.parameters (parameters: "
                f"{', '.join(names)}){did_you_mean(c.parameter, names)}",
                *at,
                "parameter",
            )
            continue
        if not c.values:
            problems.add(
                "must not be empty: list the parent's values that activate it", *at, "values"
            )
        try:
            parent = parent_spec.to_parameter()
        except (SpaceError, TypeError, ValueError):
            continue  # the parent's own problems are reported at the parent
        for j, text in enumerate(c.values):
            try:
                ok = parent.contains(parent.parse(text))
            except SpaceError:
                ok = False
            if not ok:
                problems.add(
                    f"{show(text)} is not a value of parameter {show(parent.name)}"
                    f"{_feasible_hint(parent)}",
                    *at,
                    "values",
                    j,
                )
    for i, p in enumerate(parameters):  # cycles: follow the parents from each parameter
        chain = [p.name]
        current = p
        while current.condition is not None and current.condition.parameter in by_name:
            current = by_name[current.condition.parameter]
            if current.name in chain:
                if current.name == p.name and len(chain) > 1:
                    problems.add(
                        "the conditions form a cycle: " + " -> ".join([*chain, p.name]),
                        "parameters",
                        i,
                        "condition",
                        "parameter",
                    )
                break
            chain.append(current.name)


def _feasible_hint(parent: Parameter) -> str:
    if parent.values:
        return f" (its values: {', '.join(str(v) for v in parent.values)})"
    step = "" if parent.step is None else f" step {parent.step}"
    return f" (its range: [{parent.low}, {parent.high}]{step})"


def _check_conditional_placeholders(
    parameters: Sequence[ParameterSpec], template: TrialTemplate | None, problems: Problems
) -> None:
    """A placeholder of a conditional parameter sits only where it can be dropped when the
    parameter is inactive: a whole element of a container's ``command``/``args``, or an env
    entry's ``value`` (that element or env entry is omitted)."""
    conditional = {p.name for p in parameters if p.condition is not None}
    if not conditional or template is None or template.trial_spec is None:
        return
    refers = {
        tp.name: tp.reference for tp in template.trial_parameters if tp.reference in conditional
    }
    if not refers:
        return
    found, _ = scan_placeholders(template.trial_spec)
    for placeholder in found:
        if placeholder.name not in refers:
            continue
        loc = placeholder.loc
        argv = len(loc) >= 2 and loc[-2] in ("command", "args") and isinstance(loc[-1], int)
        env = len(loc) >= 3 and loc[-3] == "env" and loc[-1] == "value"
        if not (argv or env):
            problems.add(
                f"${{trialParameters.{placeholder.name}}} refers to conditional parameter "
                f"{show(refers[placeholder.name])}, which trials where it is inactive do not "
                "have: use it only in a whole command/args element (e.g. --x=${...}) or "
                "an env value, which are left out of those trials",
                "trialTemplate",
                "trialSpec",
                *loc,
            )


def _check_int32(value: int | None) -> int | None:
    if value is not None and value > INT32_MAX:
        raise custom_error(
            f"{show(value)} is too large: Katib's trial counts are 32-bit integers "
            f"(at most {INT32_MAX})"
        )
    return value


def _spec_defaults(data: Mapping[str, Any]) -> Mapping[str, Any]:
    out = dict(data)
    if out.get("parallelTrialCount") is None:
        out["parallelTrialCount"] = DEFAULT_PARALLEL_TRIAL_COUNT
    if out.get("resumePolicy") in (None, ""):
        out["resumePolicy"] = ResumePolicy.NEVER.value
    if out.get("metricsCollectorSpec") is None:
        out["metricsCollectorSpec"] = {}
    return out


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cross_problems(original: Mapping[str, Any], data: Mapping[str, Any]) -> Problems:
    """Rules spanning several spec fields, read from the raw (defaulted) spec."""
    problems = Problems()
    parameters, nas = data.get("parameters"), data.get("nasConfig")
    if nas is not None:
        problems.add(
            "NAS (nasConfig) is not supported by tunery; tune hyperparameters with "
            "spec.parameters",
            "nasConfig",
        )
    names: list[str] | None = None
    if parameters is None:
        if nas is None:
            problems.add("is required: the hyperparameters to tune", "parameters")
    elif isinstance(parameters, list | tuple):
        if not parameters and nas is None:
            problems.add("must not be empty", "parameters")
        named = [
            (i, p.get("name"))
            for i, p in enumerate(parameters)
            if isinstance(p, Mapping) and isinstance(p.get("name"), str)
        ]
        first: dict[str, int] = {}
        for i, name in named:
            if name in first:
                problems.add(
                    f"{show(name)} is already the name of parameters[{first[name]}]",
                    "parameters",
                    i,
                    "name",
                )
            else:
                first[name] = i
        if len(named) == len(parameters):
            names = list(first)
    _check_references(data.get("trialTemplate"), names, problems)

    parallel = _int(data.get("parallelTrialCount"))
    max_trials = _int(data.get("maxTrialCount"))
    max_failed = _int(data.get("maxFailedTrialCount"))
    if max_trials is not None and max_trials > 0:
        if max_failed is not None and max_failed > max_trials:
            problems.add(
                f"{max_failed} must not exceed maxTrialCount {max_trials}", "maxFailedTrialCount"
            )
        if parallel is not None and parallel > max_trials:
            defaulted = original.get("parallelTrialCount") is None
            note = f" ({DEFAULT_PARALLEL_TRIAL_COUNT} is the default)" if defaulted else ""
            problems.add(
                f"{parallel} must not exceed maxTrialCount {max_trials}{note}",
                "parallelTrialCount",
            )
    return problems


def _check_references(template: Any, names: list[str] | None, problems: Problems) -> None:
    """Every trialParameter reference that is not trial metadata names a parameter."""
    if not names or not isinstance(template, Mapping):
        return
    trial_parameters = template.get("trialParameters")
    if not isinstance(trial_parameters, list | tuple):
        return
    for i, tp in enumerate(trial_parameters):
        ref = tp.get("reference") if isinstance(tp, Mapping) else None
        if not isinstance(ref, str) or not ref:
            continue
        if looks_like_meta_reference(ref) or ref in names:
            continue
        problems.add(
            f"{show(ref)} is not a parameter in spec.parameters (parameters: "
            f"{', '.join(names)}){did_you_mean(ref, names)}",
            "trialTemplate",
            "trialParameters",
            i,
            "reference",
        )


def _api_version(value: object) -> object:
    if isinstance(value, str) and value != API_VERSION:
        raise custom_error(
            f"{show(value)} is not supported: tunery reads {API_VERSION} Experiments"
        )
    return value


def _kind(value: object) -> object:
    if isinstance(value, str) and value != KIND:
        raise custom_error(f"{show(value)} is not supported: the document must be kind {KIND}")
    return value


class Experiment(Node):
    """A Katib ``kubeflow.org/v1beta1`` Experiment, defaulted and validated.

    Build one with :func:`load_experiment`. Frozen; compare with ``==``;
    :meth:`to_document` gives back the (defaulted) document.
    """

    api_version: Annotated[Literal["kubeflow.org/v1beta1"], BeforeValidator(_api_version)] = Field(
        alias="apiVersion"
    )
    kind: Annotated[Literal["Experiment"], BeforeValidator(_kind)]
    metadata: ObjectMeta
    spec: ExperimentSpec
    status: FreeForm | None = None
    """Written by the controller; free-form here."""

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The objective metric, then the additional metrics."""
        return self.spec.objective.metric_names

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.spec.parameters or ())

    @property
    def trial_parameter_names(self) -> tuple[str, ...]:
        return self.spec.trial_template.trial_parameter_names

    def search_space(self) -> SearchSpace:
        """The typed search space (strings parsed to numbers, int steps defaulted to 1)."""
        return self.spec.search_space()

    def objective(self) -> Objective:
        """The kernel Objective, with every metric's (defaulted) strategy."""
        return self.spec.to_objective()

    def to_document(self) -> dict[str, Any]:
        """The document as plain JSON-serialisable data: camelCase keys, defaults applied.

        ``load_experiment(e.to_document()) == e``.
        """
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_document(), sort_keys=False, allow_unicode=True)


def load_experiment(
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    algorithm_names: Collection[str] | None = None,
    early_stopping_names: Collection[str] | None = None,
) -> Experiment:
    """Parse, default and validate an Experiment.

    Args:
        source: YAML text, the path of a YAML file (an existing path given as ``str``, or any
            ``os.PathLike``), or the document as a mapping (not modified).
        algorithm_names: when given, ``spec.algorithm.algorithmName`` must be one of them.
        early_stopping_names: when given, ``spec.earlyStopping.algorithmName`` must be one.

    Raises:
        ExperimentError: the document is invalid; ``.errors`` lists every problem.
        OSError: a path given as ``os.PathLike`` cannot be read.
    """
    raw = _read_source(source)
    context = {"algorithm_names": algorithm_names, "early_stopping_names": early_stopping_names}
    try:
        return Experiment.model_validate(raw, context=context)
    except ValidationError as exc:
        raise ExperimentError(translate(exc, Experiment, raw)) from None


def _read_source(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, Mapping):
        reading.check_data(source)
        return plain(source)  # type: ignore[no-any-return]
    if isinstance(source, os.PathLike):
        data = reading.read_file(source)
    elif isinstance(source, str):
        data = reading.read_file(source) if _is_file(source) else reading.read_text(source)
    else:
        raise TypeError(
            f"an Experiment source is YAML text, a path or a mapping, not {type(source).__name__}"
        )
    if data is None:
        raise ExperimentError([FieldError("", "the document is empty")])
    if not isinstance(data, Mapping):
        if isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml")):
            message = f"no such file: {source}"
        else:
            message = (
                "the document must be a mapping with apiVersion, kind, metadata and spec, "
                f"not {show(data)}"
            )
        raise ExperimentError([FieldError("", message)])
    return plain(data)  # type: ignore[no-any-return]  # a tree: aliased parts are copied


def _is_file(text: str) -> bool:
    if "\n" in text or len(text) > 4096:
        return False
    try:
        return os.path.isfile(text)
    except (OSError, ValueError):
        return False


def crd_schema() -> dict[str, Any]:
    """A structural OpenAPI v3 schema of the Experiment, for the CRD's ``openAPIV3Schema``.

    Generated from the model: ``$ref`` inlined, nullable unions collapsed, free-form objects
    (``trialSpec``, ``customCollector``, ``httpGet``, ``status``) marked
    ``x-kubernetes-preserve-unknown-fields``. Katib's defaults appear as ``default`` where
    they are constants.
    """
    schema = crd.structural(Experiment.model_json_schema(by_alias=True))
    properties = schema["properties"]
    properties["apiVersion"] = {"type": "string", "enum": [API_VERSION]}
    properties["kind"] = {"type": "string", "enum": [KIND]}
    properties["metadata"] = {"type": "object"}
    properties["status"] = {
        "type": "object",
        crd.PRESERVE: True,
        "description": "Written by the controller.",
    }
    schema["required"] = ["spec"]
    schema["description"] = (
        "A hyperparameter tuning experiment (Katib kubeflow.org/v1beta1 Experiment)."
    )
    return schema
