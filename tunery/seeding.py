"""Warm start and enqueue: seed an experiment with known points and known results, in the store.

Kernel module (imports ``tunery.space``, ``tunery.trials``, ``tunery.experiment`` and the
``tunery.store`` interface only). Called by the CLI (``tunery run --enqueue/--warm-start``),
the SDK (``Client.enqueue``, ``Client.add_trials``, ``Client.warm_start``,
``tune(enqueue=..., warm_start=...)``) and read by the controller's reconciler through the
labels below. Everything goes through the store, so ``tunery resume``, a background driver
and the Kubernetes operator see it the same way.

- **Enqueued points** become trials in condition Created, labelled :data:`ENQUEUED_LABEL`,
  created up front in the order given. The reconciler starts Created trials oldest first and
  never more than ``parallelTrialCount`` at a time, and asks the algorithm for new trials only
  while fewer than ``parallelTrialCount`` are pending or running, so the queue drains before
  the algorithm is asked. Enqueued trials are ordinary trials: they count toward
  ``maxTrialCount``, and the algorithm sees them as pending (so it does not propose them
  again). A Ctrl-C leaves the enqueued trials not yet started in the queue.
- **Warm-start trials** are results obtained elsewhere (another experiment's completed trials,
  or values the caller gives): trials in condition Succeeded with reason :data:`WARM_START_REASON`
  and label :data:`WARM_START_LABEL`, never run. They reach the algorithm in
  ``GetSuggestions`` like any completed trial, so every Katib-compatible algorithm server uses
  them; they do **not** count toward ``maxTrialCount`` (the budget is what this experiment
  runs), and they may be the best trial.

Points are checked against the experiment's search space. An enqueued point that does not fit
is an error (:class:`SeedError`, naming the point, the parameter and the value); a warm-start
result that does not fit (a parameter missing or unknown, a value outside the space, no value
for the objective metric) is skipped and reported in :attr:`WarmStartReport.skipped`. A point
already enqueued, or a result already imported (same assignment), is not added twice, so
re-running the same command after an interruption adds nothing new.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunery.space import ParameterType, SearchSpace, SpaceError
from tunery.store.base import Store, TrialRecord, utcnow
from tunery.trials import MetricStrategy, MetricSummary, Objective, TrialCondition

ENQUEUED_LABEL = "tunery.io/enqueued"
"""Label (value ``"true"``) of a trial created from an enqueued point."""

WARM_START_LABEL = "tunery.io/warm-start"
"""Label (value ``"true"``) of a warm-start trial: a result imported, not run."""

WARM_START_REASON = "WarmStart"
"""The condition reason of a warm-start trial (its condition is Succeeded)."""

EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"

ENQUEUE_ANNOTATION = "tunery.io/enqueue"
"""Experiment annotation: a JSON list of points to enqueue (the YAML and operator form)."""

WARM_START_ANNOTATION = "tunery.io/warm-start"
"""Experiment annotation: comma-separated names of experiments to warm start from."""

_NAME_ALPHABET = string.ascii_lowercase + string.digits


class SeedError(ValueError):
    """An enqueued point or a given result is not valid; the message names it and why."""


@dataclass(frozen=True)
class Result:
    """A known result: a point of the space and the metric values it gave."""

    parameters: Mapping[str, Any]
    metrics: Mapping[str, float]
    source: str = ""
    """Where it comes from (e.g. ``experiment 'old', trial 'old-abc'``), for the message."""


@dataclass(frozen=True)
class WarmStartReport:
    """What :func:`warm_start` did: the trials it created and the results it skipped
    (``(source, why)`` pairs)."""

    added: Sequence[TrialRecord] = ()
    skipped: Sequence[tuple[str, str]] = ()
    duplicates: int = 0

    def warnings(self) -> list[str]:
        """One line per skipped result, for a CLI or a logger."""
        return [f"warm start: skipped {source}: {why}" for source, why in self.skipped]


def is_enqueued(trial: TrialRecord) -> bool:
    return trial.labels.get(ENQUEUED_LABEL) == "true"


def is_warm_start(trial: TrialRecord) -> bool:
    return trial.labels.get(WARM_START_LABEL) == "true"


def is_queued(trial: TrialRecord) -> bool:
    """An enqueued trial still waiting in the queue (Created, never started)."""
    return (
        is_enqueued(trial)
        and trial.condition is TrialCondition.CREATED
        and not (trial.runner_handle)
    )


# -- checking points ------------------------------------------------------------------------------


def _typed(space: SearchSpace, name: str, value: Any) -> Any:
    """The typed value of ``value`` for parameter ``name``; raises SpaceError saying why."""
    parameter = space[name]
    if isinstance(value, str) and parameter.type is not ParameterType.CATEGORICAL:
        value = parameter.parse(value)
    elif isinstance(value, bool):
        raise SpaceError(f"{value!r} is not a {parameter.type.value} value")
    elif parameter.type is ParameterType.INT and isinstance(value, float) and value.is_integer():
        value = int(value)
    elif parameter.type is ParameterType.DOUBLE and isinstance(value, int):
        value = float(value)
    if not parameter.contains(value):
        raise SpaceError(f"{value!r} is outside its feasible space ({_feasible(space, name)})")
    return value


def _feasible(space: SearchSpace, name: str) -> str:
    p = space[name]
    if p.values:
        return "one of " + ", ".join(str(v) for v in p.values)
    plain = p.step is None or (p.type is ParameterType.INT and p.step == 1)
    step = "" if plain else f", step {p.step}"
    return f"{p.type.value} in [{p.low}, {p.high}]{step}"


def check_point(space: SearchSpace, point: Mapping[str, Any], where: str) -> dict[str, str]:
    """The wire assignment (parameter name to Katib string) of ``point``.

    ``point`` maps every parameter of ``space`` to a value (typed, or its string); ``where``
    names it in errors (``enqueue[2]``).

    Raises:
        SeedError: a parameter is missing or unknown, or a value is not feasible; the message
            names the point, the parameter and the value.
    """
    if not isinstance(point, Mapping):
        raise SeedError(f"{where}: expected a mapping of parameter names to values, got {point!r}")
    unknown = sorted(str(k) for k in point if k not in space.names)
    if unknown:
        raise SeedError(
            f"{where}: unknown parameter(s) {', '.join(unknown)} "
            f"(the space has {', '.join(space.names)})"
        )
    missing = [n for n in space.names if n not in point]
    if missing:
        raise SeedError(f"{where}: missing value for parameter(s) {', '.join(missing)}")
    typed = {}
    for name in space.names:
        try:
            typed[name] = _typed(space, name, point[name])
        except SpaceError as exc:
            raise SeedError(f"{where}.{name}: {point[name]!r}: {exc}") from None
    return space.format_assignment(typed)


def _objective_value(metrics: Mapping[str, float], objective: Objective) -> float | None:
    value = metrics.get(objective.metric_name)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _observation(metrics: Mapping[str, float]) -> dict[str, Any]:
    out = []
    for name, value in metrics.items():
        text = repr(float(value)) if not isinstance(value, str) else value
        out.append({"name": str(name), "min": text, "max": text, "latest": text})
    return {"metrics": out}


# -- the store operations ------------------------------------------------------------------------


def experiment_space(store: Store, name: str) -> tuple[SearchSpace, Objective]:
    """The search space and objective of stored experiment ``name``.

    Raises:
        NotFoundError: no such experiment. SeedError: its stored document is not valid.
    """
    from tunery.experiment import ExperimentError, load_experiment

    record = store.get_experiment(name)
    try:
        experiment = load_experiment(record.spec)
    except ExperimentError as exc:
        raise SeedError(f"experiment {name!r} has an invalid stored document: {exc}") from None
    return experiment.search_space(), experiment.objective()


def _new_name(experiment: str, taken: set[str]) -> str:
    while True:
        name = f"{experiment}-{''.join(secrets.choice(_NAME_ALPHABET) for _ in range(8))}"
        if name not in taken:
            taken.add(name)
            return name


def enqueue(
    store: Store,
    experiment: str,
    points: Sequence[Mapping[str, Any]],
    *,
    now: dt.datetime | None = None,
) -> list[TrialRecord]:
    """Add ``points`` to the experiment's queue (Created trials, in order); returns the trials
    created. Points already enqueued (same assignment) are left out; all points are checked
    before any is written.

    Raises:
        SeedError: a point does not fit the space (nothing is written).
        NotFoundError: no such experiment.
    """
    space, _ = experiment_space(store, experiment)
    if isinstance(points, Mapping) or not isinstance(points, Sequence | Iterable):
        raise SeedError(f"enqueue: expected a list of points, got {points!r}")
    wires = [check_point(space, point, f"enqueue[{i}]") for i, point in enumerate(points)]
    existing = store.list_trials(experiment)
    seen = {_key(space, t.assignment) for t in existing if is_enqueued(t)}
    taken = {t.name for t in existing}
    created = now or utcnow()
    trials = []
    for wire in wires:
        key = _key(space, wire)
        if key in seen:
            continue
        seen.add(key)
        trials.append(
            TrialRecord(
                name=_new_name(experiment, taken),
                experiment_name=experiment,
                assignment=wire,
                message="Trial is enqueued",
                labels={EXPERIMENT_LABEL: experiment, ENQUEUED_LABEL: "true"},
                created_at=created,
            )
        )
    if trials:
        store.create_trials(trials)
    return trials


def warm_start(
    store: Store,
    experiment: str,
    results: Iterable[Result],
    *,
    now: dt.datetime | None = None,
) -> WarmStartReport:
    """Store ``results`` as warm-start trials of ``experiment`` (Succeeded, reason WarmStart,
    never run). Results outside the space or without a finite objective value are skipped and
    reported; results whose assignment is already a warm-start trial are not added again.

    Raises:
        NotFoundError: no such experiment.
    """
    space, objective = experiment_space(store, experiment)
    existing = store.list_trials(experiment)
    seen = {_key(space, t.assignment) for t in existing if is_warm_start(t)}
    taken = {t.name for t in existing}
    when = now or utcnow()
    added: list[TrialRecord] = []
    skipped: list[tuple[str, str]] = []
    duplicates = 0
    for i, result in enumerate(results):
        source = result.source or f"result {i}"
        try:
            wire = check_point(space, result.parameters, "parameters")
        except SeedError as exc:
            skipped.append((source, str(exc)))
            continue
        if _objective_value(result.metrics, objective) is None:
            skipped.append(
                (source, f"no finite value of the objective metric {objective.metric_name!r}")
            )
            continue
        key = _key(space, wire)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        added.append(
            TrialRecord(
                name=_new_name(experiment, taken),
                experiment_name=experiment,
                assignment=wire,
                condition=TrialCondition.SUCCEEDED,
                reason=WARM_START_REASON,
                message=f"Warm start from {source} (not run)",
                labels={EXPERIMENT_LABEL: experiment, WARM_START_LABEL: "true"},
                created_at=when,
                start_time=when,
                completion_time=when,
                observation=_observation(result.metrics),
            )
        )
    if added:
        store.create_trials(added)
    return WarmStartReport(added, skipped, duplicates)


def results_of(store: Store, source: str) -> list[Result]:
    """The completed trials of experiment ``source`` as results: Succeeded or EarlyStopped
    trials with metrics (their values by each metric's strategy), warm-start ones included.

    Raises:
        NotFoundError: no such experiment.
    """
    record = store.get_experiment(source)
    objective_doc = (record.spec.get("spec") or {}).get("objective") or {}
    strategies = {s["name"]: s["value"] for s in objective_doc.get("metricStrategies") or []}
    out = []
    done = (TrialCondition.SUCCEEDED, TrialCondition.EARLY_STOPPED)
    for trial in store.list_trials(source, conditions=done):
        metrics: dict[str, float] = {}
        for m in (trial.observation or {}).get("metrics", []):
            summary = MetricSummary(m["name"], m["min"], m["max"], m["latest"])
            strategy = strategies.get(m["name"], "latest")
            value = summary.select_numeric(MetricStrategy(strategy))
            if value is not None:
                metrics[m["name"]] = value
        out.append(
            Result(
                parameters=dict(trial.assignment),
                metrics=metrics,
                source=f"experiment {source!r}, trial {trial.name!r}",
            )
        )
    return out


def results_from(items: Iterable[Any], metric_name: str) -> list[Result]:
    """Results from the SDK's forms: a :class:`Result`, a mapping ``{"parameters": {...},
    "value": v}`` (``v`` is the objective metric's value) or ``{"parameters": {...},
    "metrics": {...}}``, or a pair ``(parameters, value or metrics)``.

    Raises:
        SeedError: an item has none of these forms (names its index).
    """
    out = []
    for i, item in enumerate(items):
        where = f"warm_start[{i}]"
        if isinstance(item, Result):
            out.append(item)
            continue
        if isinstance(item, Mapping) and "parameters" in item:
            parameters, outcome = item["parameters"], item.get("metrics", item.get("value"))
            if "metrics" in item and "value" in item:
                raise SeedError(f"{where}: give 'value' or 'metrics', not both")
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
            parameters, outcome = item
        else:
            raise SeedError(
                f"{where}: expected {{'parameters': {{...}}, 'value': number}}, "
                f"{{'parameters': {{...}}, 'metrics': {{...}}}} or (parameters, value), "
                f"got {item!r}"
            )
        if not isinstance(parameters, Mapping):
            raise SeedError(f"{where}.parameters: expected a mapping, got {parameters!r}")
        if isinstance(outcome, Mapping):
            metrics = dict(outcome)
        elif isinstance(outcome, int | float) and not isinstance(outcome, bool):
            metrics = {metric_name: outcome}
        else:
            raise SeedError(f"{where}: the value must be a number or a mapping, got {outcome!r}")
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SeedError(f"{where}.metrics.{name}: {value!r} is not a number")
        out.append(Result(dict(parameters), metrics, source=where))
    return out


def annotation_seeds(document: Mapping[str, Any]) -> tuple[list[Any], list[str]]:
    """The points to enqueue and the experiments to warm start from that an Experiment
    document's annotations ask for (:data:`ENQUEUE_ANNOTATION`, :data:`WARM_START_ANNOTATION`).
    Katib ignores annotations, so the same YAML still runs there (without the seeds).

    Raises:
        SeedError: the enqueue annotation is not a JSON list, or a point does not fit the
            space (the message names the annotation, the point and the parameter).
    """
    import json

    from tunery.experiment import ExperimentError, load_experiment

    annotations = (document.get("metadata") or {}).get("annotations") or {}
    where = f"metadata.annotations[{ENQUEUE_ANNOTATION!r}]"
    points: list[Any] = []
    text = annotations.get(ENQUEUE_ANNOTATION)
    if text:
        try:
            points = json.loads(text)
        except ValueError as exc:
            raise SeedError(f"{where}: not JSON: {exc}") from None
        if not isinstance(points, list):
            raise SeedError(f"{where}: expected a JSON list of {{parameter: value}} maps")
        try:
            space = load_experiment(document).search_space()
        except ExperimentError as exc:
            raise SeedError(f"invalid Experiment: {exc}") from None
        for i, point in enumerate(points):
            check_point(space, point, f"{where}[{i}]")
    sources = [
        name.strip()
        for name in (annotations.get(WARM_START_ANNOTATION) or "").split(",")
        if name.strip()
    ]
    return points, sources


def _key(space: SearchSpace, wire: Mapping[str, str]) -> tuple[str, ...]:
    """An assignment's identity in this space (its typed values formatted), or the raw strings
    when it does not fit the space."""
    try:
        return space.key(space.parse_assignment(wire))
    except SpaceError:
        return tuple(sorted(f"{k}={v}" for k, v in wire.items()))
