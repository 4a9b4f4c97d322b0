"""Helpers for the suggestion service tests: Katib-style protos as a controller sends them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from suggestion.service import SuggestionService
from tunery.api import api_pb2, api_pb2_grpc

ParamSpec = tuple[str, int, Mapping[str, object]]

DEFAULT_PARAMS: Sequence[ParamSpec] = (
    ("lr", api_pb2.DOUBLE, {"min": "0.0001", "max": "0.1", "distribution": api_pb2.LOG_UNIFORM}),
    ("layers", api_pb2.INT, {"min": "1", "max": "8"}),
    ("opt", api_pb2.CATEGORICAL, {"list": ["sgd", "adam", "rmsprop"]}),
)


REQUIRED_SETTINGS: dict[str, dict[str, str]] = {
    "pbt": {"suggestion_trial_dir": "/ckpt", "n_population": "5", "truncation_threshold": "0.2"},
}
"""Settings Katib requires for an algorithm; :func:`experiment` adds them unless overridden."""


def experiment(
    algorithm: str = "random",
    *,
    name: str = "exp",
    params: Sequence[ParamSpec] = DEFAULT_PARAMS,
    settings: Mapping[str, str] | None = None,
    objective: int = api_pb2.MINIMIZE,
    metric: str = "loss",
    max_trial_count: int = 0,
) -> api_pb2.Experiment:
    """A Katib ``Experiment`` proto as the controller sends it."""
    specs = [
        api_pb2.ParameterSpec(
            name=pname, parameter_type=ptype, feasible_space=api_pb2.FeasibleSpace(**fs)
        )
        for pname, ptype, fs in params
    ]
    return api_pb2.Experiment(
        name=name,
        spec=api_pb2.ExperimentSpec(
            parameter_specs=api_pb2.ExperimentSpec.ParameterSpecs(parameters=specs),
            objective=api_pb2.ObjectiveSpec(type=objective, objective_metric_name=metric),
            algorithm=api_pb2.AlgorithmSpec(
                algorithm_name=algorithm,
                algorithm_settings=[
                    api_pb2.AlgorithmSetting(name=k, value=v)
                    for k, v in {
                        **REQUIRED_SETTINGS.get(algorithm, {}),
                        **(settings or {}),
                    }.items()
                ],
            ),
            max_trial_count=max_trial_count,
            parallel_trial_count=3,
        ),
    )


def add_trial(
    request: api_pb2.GetSuggestionsRequest,
    assignments: Mapping[str, str] | Sequence[api_pb2.ParameterAssignment],
    condition: int = api_pb2.TrialStatus.SUCCEEDED,
    value: str | None = None,
    metric: str = "loss",
    name: str | None = None,
) -> api_pb2.Trial:
    """Append a trial (with the metric when ``value`` is given) to ``request``."""
    trial = request.trials.add(name=name or f"{request.experiment.name}-{len(request.trials)}")
    if isinstance(assignments, Mapping):
        for k, v in assignments.items():
            trial.spec.parameter_assignments.assignments.add(name=k, value=v)
    else:
        trial.spec.parameter_assignments.assignments.extend(assignments)
    trial.status.condition = condition
    if value is not None:
        trial.status.observation.metrics.add(name=metric, value=value)
    return trial


def wire(reply_assignments: api_pb2.GetSuggestionsReply.ParameterAssignments) -> dict[str, str]:
    return {a.name: a.value for a in reply_assignments.assignments}


def objective_value(values: Mapping[str, str]) -> str:
    """A deterministic objective of the default parameters (any wire values)."""
    total = 0.0
    for _, value in sorted(values.items()):
        try:
            total += float(value)
        except ValueError:
            total += len(value)
    return repr(total)


@dataclass
class Server:
    port: int
    service: SuggestionService
    channel: grpc.Channel
    stub: api_pb2_grpc.SuggestionStub
