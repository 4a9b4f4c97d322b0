"""The Algorithm interface every suggestion algorithm implements, and typed settings parsing.

Called by ``suggestion.service`` (through the registry in ``suggestion.algorithms``) and by the
conformance tests. Algorithms import no grpc, no SQL, no kubernetes: they see a
:class:`SuggestRequest` of kernel types and return typed assignments.

Contract:
- ``suggest`` returns exactly ``request.count`` assignments, each inside ``request.space``
  (steps honoured, ints as ``int``), distinct from each other and from every trial in
  ``request.trials`` (pending ones included), unless the space is exhausted, in which case it
  raises :class:`SpaceExhaustedError` (finite spaces) instead of looping.
- Given the same settings, seed and request, the output is the same (deterministic). The seed
  is ``random_state`` or, when unset, derived from the experiment name (:meth:`Algorithm.seed`),
  so restarts and replicas agree.
- An instance may cache model state between calls for the same experiment (the service keeps
  one instance per experiment); a fresh instance given the same request must behave equally
  well (restart-safety). ``request.trials`` is always the whole history, in the controller's
  order (creation order for tunery's controller).

Errors (each maps to one gRPC status in ``suggestion.service.status_for``)::

    SuggestionError
    ├── InvalidSettingsError(ValueError)     INVALID_ARGUMENT  unknown setting, bad value
    ├── UnknownAlgorithmError(LookupError)   INVALID_ARGUMENT  no such algorithmName
    ├── UnsupportedSpaceError(ValueError)    INVALID_ARGUMENT  e.g. cmaes with one number
    ├── InvalidRequestError(ValueError)      INVALID_ARGUMENT  malformed space/trial/count
    ├── SpaceExhaustedError                  OUT_OF_RANGE      a finite space is used up
    └── NotReadyError                        FAILED_PRECONDITION  waits for running trials

None but NotReadyError is retryable as is: the request or the experiment has to change.
NotReadyError is raised only by staged algorithms (capability ``"staged"``, e.g. hyperband,
whose next rung needs the whole previous rung finished): the controller asks again, one
assignment at a time, once trials have finished.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from tunery.settings import parse_settings as parse_katib_settings
from tunery.space import Assignment, SearchSpace
from tunery.trials import Objective, TrialResult


class SuggestionError(Exception):
    """Root of the suggestion package's errors (mapped to gRPC codes in ``service.py``)."""


class InvalidSettingsError(SuggestionError, ValueError):
    """An algorithm setting is unknown or has a bad value (gRPC INVALID_ARGUMENT)."""


class UnknownAlgorithmError(SuggestionError, LookupError):
    """No algorithm is registered under that name (gRPC INVALID_ARGUMENT)."""


class UnsupportedSpaceError(SuggestionError, ValueError):
    """The algorithm cannot search this space, e.g. cmaes with one numeric parameter."""


class SpaceExhaustedError(SuggestionError):
    """Fewer distinct new assignments remain than were requested (gRPC OUT_OF_RANGE)."""


class NotReadyError(SuggestionError):
    """Fewer assignments than requested can be made until running trials finish (gRPC
    FAILED_PRECONDITION); only algorithms with the ``"staged"`` capability raise it."""


class InvalidRequestError(SuggestionError, ValueError):
    """The request itself is malformed: a bad search space, objective, trial assignment or
    count (gRPC INVALID_ARGUMENT). Raised by ``suggestion.convert`` and the service."""


def derive_seed(random_state: int | None, experiment_name: str) -> int:
    """The seed an algorithm uses: ``random_state`` when set, else a stable 32-bit hash of the
    experiment name, so a restarted server (or another replica) behaves exactly the same."""
    if random_state is not None:
        return random_state
    digest = hashlib.blake2b(experiment_name.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class AlgorithmSettings:
    """Base of every algorithm's typed settings. Subclasses add defaulted fields and validate
    them in ``__post_init__`` by raising :class:`InvalidSettingsError` with Katib's message."""

    random_state: int | None = None

    def __post_init__(self) -> None:
        if self.random_state is not None and self.random_state < 0:
            raise InvalidSettingsError("random_state should be great or equal than zero")


@dataclass(frozen=True)
class SuggestRequest:
    """Everything an algorithm may use. Add fields with defaults; never remove any."""

    space: SearchSpace
    objective: Objective
    trials: Sequence[TrialResult]
    count: int
    experiment_name: str = ""
    max_trial_count: int | None = None
    parallel_trial_count: int | None = None

    @property
    def completed(self) -> list[TrialResult]:
        """Trials with an objective value (Succeeded or EarlyStopped)."""
        return [t for t in self.trials if t.is_completed_with_value]

    @property
    def pending(self) -> list[TrialResult]:
        """Created or running trials, whose points must not be proposed again."""
        return [t for t in self.trials if t.is_pending]


@dataclass(frozen=True)
class SuggestedTrial:
    """A suggestion with the trial name and labels an algorithm chose for it.

    Most algorithms leave ``name`` empty (the controller names the trial) and set no labels;
    pbt names its trials and labels them with their generation and parent, as Katib's does
    (``GetSuggestionsReply.ParameterAssignments.trial_name`` and ``labels``).
    """

    assignment: Assignment
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


class Algorithm(abc.ABC):
    """A suggestion algorithm. Register it with one line in ``suggestion.algorithms.REGISTRY``.

    Class attributes:
        name: the Katib ``algorithmName``.
        settings_type: the frozen settings dataclass.
        capabilities: e.g. ``{"finite"}`` for algorithms that may exhaust a finite space;
            ``{"repeats"}`` for algorithms that may suggest an assignment again on purpose
            (pbt: an exploited member continues with a better member's values), exempt from
            the distinctness clause of the contract; ``{"checkpoints"}`` for algorithms whose
            trials continue each other's checkpoints (pbt): not black-box optimisers of a
            function, so the black-box benchmarks leave them out;
            ``{"multi-objective"}`` for algorithms that search several objectives (the others
            refuse such an experiment in :meth:`check_objective`).
    """

    name: ClassVar[str]
    settings_type: ClassVar[type[AlgorithmSettings]] = AlgorithmSettings
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: AlgorithmSettings | None = None) -> None:
        self.settings = settings if settings is not None else self.settings_type()

    @classmethod
    def validate(
        cls,
        space: SearchSpace,
        objective: Objective,
        settings: AlgorithmSettings,
        max_trial_count: int | None = None,
    ) -> None:
        """Check the experiment can run with this algorithm (beyond settings parsing).

        Raises:
            InvalidSettingsError / UnsupportedSpaceError with a user-facing message.
        """

    @classmethod
    def validate_parallelism(
        cls, settings: AlgorithmSettings, parallel_trial_count: int | None
    ) -> None:
        """Check the experiment's ``parallelTrialCount`` (hyperband has a lower bound).

        Raises:
            InvalidSettingsError: with a user-facing message.
        """

    @classmethod
    def check_objective(cls, objective: Objective) -> None:
        """Refuse a multi-objective experiment unless the algorithm supports it.

        Called with :meth:`validate` by the service and the local validation.

        Raises:
            UnsupportedSpaceError: several objectives for a single-objective algorithm.
        """
        if objective.is_multi and "multi-objective" not in cls.capabilities:
            supported = "nsga2, motpe or parego"
            raise UnsupportedSpaceError(
                f"{cls.name} optimises one objective, but the experiment has "
                f"{len(objective.terms)} ({', '.join(objective.objective_metric_names)}); "
                f"use a multi-objective algorithm ({supported})"
            )

    @abc.abstractmethod
    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        """Return ``request.count`` new assignments (see the module contract)."""

    def suggest_trials(self, request: SuggestRequest) -> list[SuggestedTrial]:
        """:meth:`suggest` with trial names and labels; what the service calls. Algorithms
        that name or label their trials override this (and derive ``suggest`` from it)."""
        return [SuggestedTrial(a) for a in self.suggest(request)]

    def feasible(self, space: SearchSpace, assignment: Assignment) -> bool:
        """Whether a suggested assignment is acceptable (the service checks every one).

        The space's feasibility; hyperband overrides it, as it sets its resource parameter
        to values outside that parameter's declared range, as Katib's does."""
        return space.contains(assignment)

    def reply_settings(self, request: SuggestRequest) -> list[tuple[str, str]]:
        """Settings to send back in ``GetSuggestionsReply.algorithm`` after a suggestion.

        Katib's controller stores them and merges them into the experiment's settings of the
        next request (its hyperband keeps its state so). None by default."""
        return []

    def seed(self, request: SuggestRequest) -> int:
        """This experiment's seed: ``random_state`` or one derived from the experiment name."""
        return derive_seed(self.settings.random_state, request.experiment_name)


def refuse_conditional(algorithm: str, space: SearchSpace, hint: str) -> None:
    """Raise :class:`UnsupportedSpaceError` naming the conditional parameters of ``space``
    (for algorithms whose model needs every parameter in every trial)."""
    conditional = [p.name for p in space if p.condition is not None]
    if conditional:
        raise UnsupportedSpaceError(
            f"{algorithm} does not support conditional parameters "
            f"({', '.join(conditional)}); {hint}"
        )


def parse_settings(
    settings_type: type[AlgorithmSettings],
    raw: Mapping[str, str] | Iterable[tuple[str, str]],
    algorithm: str,
) -> AlgorithmSettings:
    """Typed settings from Katib's name/value strings (by :mod:`tunery.settings`).

    Raises:
        InvalidSettingsError: an unknown name ("unknown setting X for algorithm Y"), a name
            given twice, a value that does not parse ("failed to validate X(V): reason"), or a
            value the settings type rejects (its own message).
    """
    return parse_katib_settings(settings_type, raw, algorithm, InvalidSettingsError)
