"""Algorithm and early-stopping settings of an Experiment, checked before anything is stored.

Called by ``tunery validate``, ``tunery run`` and the SDK's local ``tune()`` through
:func:`load_checked`. Beside the document's own validation
(:func:`tunery.experiment.load_experiment`) it asks the in-process algorithm and early stopper
what the reconciler will ask their services (``ValidateAlgorithmSettings``,
``ValidateEarlyStoppingSettings``), and reports each problem at its field path, e.g.
``spec.algorithm.algorithmSettings[0].name: unknown setting gama for algorithm tpe; did you
mean "gamma"?``, and refuses a grid whose parameters have more than :data:`MAX_GRID_VALUES`
values each, so a typo is an invalid document (exit 2, nothing stored) rather than an
experiment that fails after it was created. Algorithms served by a gRPC endpoint are left to
that server, which the reconciler asks as Katib does. The trial template's shell scripts are
checked too (:func:`controller.template_check.template_problems`), the metric names the
collector must read (:func:`controller.collector_check.collector_problems`), and what the
collector kind asks of a local run (:func:`controller.local_collectors.local_problems`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from controller.collector_check import collector_problems
from controller.local_collectors import local_problems
from controller.template_check import template_problems
from earlystop import REGISTRY as EARLY_STOPPERS
from earlystop import get_early_stopper
from suggestion.algorithms import REGISTRY as ALGORITHMS
from suggestion.algorithms import get_algorithm
from tunery.experiment import (
    Experiment,
    ExperimentError,
    FieldError,
    did_you_mean,
    load_experiment,
)
from tunery.settings import parse_settings

MAX_GRID_VALUES = 100_000
"""The most values one parameter may have under a grid (``finite``) algorithm; checked
arithmetically, so a tiny step costs nothing to refuse."""


def load_checked(
    source: str | os.PathLike[str] | Mapping[str, Any], served_elsewhere: Collection[str] = ()
) -> Experiment:
    """:func:`~tunery.experiment.load_experiment` with the registered algorithm and early
    stopper names, then :func:`settings_problems` and
    :func:`~controller.template_check.template_problems`.

    Raises:
        ExperimentError: every problem of the document, or of its settings.
        OSError: a path given as ``os.PathLike`` cannot be read.
    """
    experiment = load_experiment(
        source,
        algorithm_names=set(ALGORITHMS) | set(served_elsewhere),
        early_stopping_names=set(EARLY_STOPPERS),
    )
    problems = settings_problems(experiment, served_elsewhere) + template_problems(experiment)
    document = experiment.to_document()
    problems += collector_problems(document) + local_problems(document)
    if problems:
        raise ExperimentError(problems)
    return experiment


def settings_problems(
    experiment: Experiment, served_elsewhere: Collection[str] = ()
) -> list[FieldError]:
    """Every problem with the experiment's algorithm and early-stopping settings; [] if none.

    ``served_elsewhere``: algorithm names a remote Suggestion server answers (not checked).
    """
    spec = experiment.to_document()["spec"]
    problems: list[FieldError] = []
    algorithm = spec["algorithm"]
    name = algorithm["algorithmName"]
    if name in ALGORITHMS and name not in served_elsewhere:
        cls = get_algorithm(name)
        found, parsed = _locate(
            cls.settings_type,
            name,
            _pairs(algorithm.get("algorithmSettings")),
            "spec.algorithm.algorithmSettings",
        )
        problems += found
        if "finite" in cls.capabilities:
            grid_problems = grid_size_problems(experiment, name)
            problems += grid_problems
            if grid_problems:
                parsed = None  # the algorithm's own check would enumerate the huge grid
        if parsed is not None:  # the settings parse: can the algorithm search this space?
            try:
                cls.check_objective(experiment.objective())
                cls.validate(
                    experiment.search_space(),
                    experiment.objective(),
                    parsed,
                    spec.get("maxTrialCount"),
                )
            except ValueError as exc:
                problems.append(FieldError("spec.algorithm.algorithmName", f"{name}: {exc}"))
            else:
                try:  # hyperband: the largest rung must run at once, as Katib requires
                    cls.validate_parallelism(parsed, spec.get("parallelTrialCount") or 3)
                except ValueError as exc:
                    problems.append(FieldError("spec.parallelTrialCount", f"{name}: {exc}"))
    stopping = spec.get("earlyStopping")
    if stopping and stopping["algorithmName"] in EARLY_STOPPERS:
        stopper = get_early_stopper(stopping["algorithmName"])
        found, _ = _locate(
            stopper.settings_type,
            stopping["algorithmName"],
            _pairs(stopping.get("algorithmSettings")),
            "spec.earlyStopping.algorithmSettings",
        )
        problems += found
    return problems


def grid_size_problems(experiment: Experiment, algorithm: str) -> list[FieldError]:
    """Each parameter whose grid has more than :data:`MAX_GRID_VALUES` values, computed
    arithmetically (nothing is enumerated). Continuous doubles are left to the algorithm."""
    problems = []
    for i, spec in enumerate(experiment.spec.parameters or ()):
        parameter = spec.to_parameter()
        size = parameter.grid_size()
        if size is None or size <= MAX_GRID_VALUES:
            continue
        fs = spec.feasible_space
        step = fs.step if fs.step is not None else "1"
        field = "step" if fs.step is not None else "max"
        problems.append(
            FieldError(
                f"spec.parameters[{i}].feasibleSpace.{field}",
                f"parameter {spec.name!r} has {size} grid values (min {fs.low}, max {fs.high}, "
                f"step {step}); algorithm {algorithm} takes at most {MAX_GRID_VALUES} values "
                "per parameter: use a larger step or a narrower range",
            )
        )
    return problems


def _pairs(settings: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, str]]:
    return [(s["name"], str(s.get("value", ""))) for s in settings or ()]


def _locate(
    settings_type: type, algorithm: str, settings: Sequence[tuple[str, str]], path: str
) -> tuple[list[FieldError], Any]:
    """The problems of ``settings`` and the parsed settings (None if there are problems).

    Each setting is parsed alone first, so a problem is reported at its own entry (``.name``
    for an unknown name, ``.value`` for a bad value); then all together, for rules between
    them. Both packages' ``InvalidSettingsError`` are ``ValueError``s.
    """
    known = [f.name for f in dataclasses.fields(settings_type)]
    problems = []
    for i, (name, value) in enumerate(settings):
        try:
            parse_settings(settings_type, [(name, value)], algorithm, ValueError)
        except ValueError as exc:
            if name in known:
                problems.append(FieldError(f"{path}[{i}].value", str(exc)))
            else:
                hint = did_you_mean(name, known) or f"; known: {', '.join(known)}"
                problems.append(FieldError(f"{path}[{i}].name", f"{exc}{hint}"))
    if problems:
        return problems, None
    try:
        return [], parse_settings(settings_type, dict(settings), algorithm, ValueError)
    except ValueError as exc:
        return [FieldError(path, str(exc))], None
