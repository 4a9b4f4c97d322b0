"""Reading Experiment documents for the SDK: loading with SDK errors, conditions, budgets.

Part of the SDK, shared by the client, ``tune()`` and both backends. Works on Katib-shaped
documents (the local backend's and the cluster's alike).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tunery.sdk import records
from tunery.sdk.errors import (
    BackendUnavailableError,
    InvalidArgumentError,
    InvalidExperimentError,
    TuneryError,
)
from tunery.space import SearchSpace
from tunery.trials import Objective


def load_document(source: Any, loader: Callable[..., Any] | None = None, **options: Any) -> Any:
    """``loader`` (default ``tunery.experiment.load_experiment``) with its errors as SDK
    errors."""
    from tunery.experiment import Experiment, ExperimentError, load_experiment

    if isinstance(source, Experiment):
        source = source.to_document()
    try:
        return (loader or load_experiment)(source, **options)
    except ExperimentError as exc:
        raise InvalidExperimentError(
            f"invalid Experiment ({len(exc.errors)} problem(s)):\n{exc}", exc.errors
        ) from None
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read {source}: {exc.strerror}") from None
    except TypeError as exc:
        raise InvalidArgumentError(str(exc)) from None


def objective_and_space(document: Mapping[str, Any]) -> tuple[Objective, SearchSpace | None]:
    """The objective and typed search space of a stored or cluster document."""
    from tunery.experiment import ExperimentError, load_experiment

    try:
        experiment = load_experiment(document)
        return experiment.objective(), experiment.search_space()
    except ExperimentError:
        from tunery.trials import MetricStrategy, ObjectiveType

        o = (document.get("spec") or {}).get("objective") or {}
        objective = Objective(
            type=ObjectiveType(o.get("type", "maximize")),
            metric_name=str(o.get("objectiveMetricName", "")),
            additional_metric_names=tuple(o.get("additionalMetricNames") or ()),
            strategies={
                s["name"]: MetricStrategy(s["value"]) for s in o.get("metricStrategies") or []
            },
            constraints=tuple(o.get("constraints") or ()),
        )
        return objective, None


def conditions(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(c) for c in (document.get("status") or {}).get("conditions") or []]


def has_condition(document: Mapping[str, Any], condition: str) -> bool:
    return any(
        c.get("type") == condition and str(c.get("status")) == "True" for c in conditions(document)
    )


def is_completed(document: Mapping[str, Any]) -> bool:
    current = records.latest_condition(conditions(document))
    return current is not None and current.get("type") in ("Succeeded", "Failed")


def budget_fields(
    max_trial_count: int | None,
    parallel_trial_count: int | None,
    max_failed_trial_count: int | None,
) -> dict[str, int]:
    budget = {}
    for key, value in (
        ("maxTrialCount", max_trial_count),
        ("parallelTrialCount", parallel_trial_count),
        ("maxFailedTrialCount", max_failed_trial_count),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgumentError(f"{key}: {value!r} must be an integer")
        budget[key] = value
    if not budget:
        raise InvalidArgumentError(
            "give at least one of max_trial_count, parallel_trial_count, max_failed_trial_count"
        )
    return budget


def store_error(exc: BaseException) -> TuneryError:
    from tunery.store.errors import StoreUnavailableError

    if isinstance(exc, StoreUnavailableError):
        return BackendUnavailableError(f"the database is unavailable: {exc}")
    return TuneryError(f"store error: {exc}")
