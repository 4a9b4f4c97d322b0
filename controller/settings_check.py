"""Algorithm and early-stopping settings of an Experiment, checked before anything is stored.

Called by ``tunery validate``, ``tunery run`` and the SDK's local ``tune()`` once the document
itself is valid (:func:`tunery.experiment.load_experiment`). It asks the in-process algorithm
and early stopper what the reconciler will ask their services (``ValidateAlgorithmSettings``,
``ValidateEarlyStoppingSettings``), and reports each problem at its field path, e.g.
``spec.algorithm.algorithmSettings[0].name: unknown setting gama for algorithm tpe; did you
mean "gamma"?``, so a typo is an invalid document (exit 2, nothing stored) rather than an
experiment that fails after it was created. Algorithms served by a gRPC endpoint are left to
that server, which the reconciler asks as Katib does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from earlystop import REGISTRY as EARLY_STOPPERS
from earlystop import get_early_stopper
from earlystop.base import parse_settings as parse_early_stopping_settings
from suggestion.algorithms import REGISTRY as ALGORITHMS
from suggestion.algorithms import get_algorithm
from suggestion.algorithms.base import parse_settings as parse_algorithm_settings
from suggestion.convert import experiment_from_proto
from tunery.experiment import Experiment, FieldError, did_you_mean

Parse = Callable[[Mapping[str, str]], Any]


def settings_problems(
    experiment: Experiment, served_elsewhere: Collection[str] = ()
) -> list[FieldError]:
    """Every problem with the experiment's algorithm and early-stopping settings; [] if none.

    ``served_elsewhere``: algorithm names a remote Suggestion server answers (not checked).
    """
    from controller.protos import experiment_proto

    spec = experiment.to_document()["spec"]
    problems: list[FieldError] = []
    algorithm = spec["algorithm"]
    name = algorithm["algorithmName"]
    if name in ALGORITHMS and name not in served_elsewhere:
        cls = get_algorithm(name)
        settings = _pairs(algorithm.get("algorithmSettings"))
        found = _locate(
            lambda raw: parse_algorithm_settings(cls.settings_type, raw, name),
            settings,
            _field_names(cls.settings_type),
            "spec.algorithm.algorithmSettings",
        )
        problems += found
        if not found:  # the settings parse: can the algorithm search this space?
            try:
                view = experiment_from_proto(experiment_proto(experiment.name, spec))
                parsed = parse_algorithm_settings(cls.settings_type, dict(settings), name)
                cls.validate(view.space, view.objective, parsed, view.max_trial_count)
            except ValueError as exc:
                problems.append(FieldError("spec.algorithm.algorithmName", f"{name}: {exc}"))
    stopping = spec.get("earlyStopping")
    if stopping and stopping["algorithmName"] in EARLY_STOPPERS:
        stopper = get_early_stopper(stopping["algorithmName"])
        problems += _locate(
            lambda raw: parse_early_stopping_settings(
                stopper.settings_type, raw, stopping["algorithmName"]
            ),
            _pairs(stopping.get("algorithmSettings")),
            _field_names(stopper.settings_type),
            "spec.earlyStopping.algorithmSettings",
        )
    return problems


def _pairs(settings: Sequence[Mapping[str, Any]] | None) -> list[tuple[str, str]]:
    return [(s["name"], str(s.get("value", ""))) for s in settings or ()]


def _field_names(settings_type: type) -> list[str]:
    return [f.name for f in dataclasses.fields(settings_type)]


def _locate(
    parse: Parse, settings: Sequence[tuple[str, str]], known: Sequence[str], path: str
) -> list[FieldError]:
    """Each setting parsed alone, so a problem is reported at its own entry (``.name`` for an
    unknown name, ``.value`` for a bad value); then all together, for rules between them."""
    problems = []
    for i, (name, value) in enumerate(settings):
        try:
            parse({name: value})
        except ValueError as exc:
            if name in known:
                problems.append(FieldError(f"{path}[{i}].value", str(exc)))
            else:
                hint = did_you_mean(name, known) or f"; known: {', '.join(known)}"
                problems.append(FieldError(f"{path}[{i}].name", f"{exc}{hint}"))
    if not problems:
        try:
            parse(dict(settings))
        except ValueError as exc:
            problems.append(FieldError(path, str(exc)))
    return problems
