"""The EarlyStopper interface, typed settings parsing, and the package's errors.

Called by ``earlystop.service`` (Katib's wire form), by ``earlystop.inprocess`` (the
controller's and collector's in-process form) and by the tests, always through the registry
in ``earlystop``. Stoppers import no grpc and no SQL: they see kernel types only
(:class:`~tunery.trials.Objective`, :class:`~tunery.trials.Observation`) and answer with
:class:`~tunery.trials.StopDecision` values and :class:`StopRule` thresholds.

An early stopper works in two stages, so that a decision per reported metric is cheap:

1. :meth:`EarlyStopper.prepare` digests the objective curves of the completed trials once
   per change of that set and returns a :class:`StopPolicy`;
2. :meth:`StopPolicy.decide_curve` judges a running trial from its :class:`RunningCurve`,
   which a caller extends by one observation at a time in O(1).

Error tree (gRPC status in ``earlystop.service``)::

    EarlyStopError(Exception)
     ├── InvalidSettingsError(EarlyStopError, ValueError)        INVALID_ARGUMENT
     ├── UnknownAlgorithmError(EarlyStopError, LookupError)      INVALID_ARGUMENT
     ├── InvalidRequestError(EarlyStopError, ValueError)         INVALID_ARGUMENT
     ├── TrialNotFoundError(EarlyStopError, KeyError)            NOT_FOUND
     ├── NoStoreError(EarlyStopError)                            FAILED_PRECONDITION
     └── ObservationsUnavailableError(EarlyStopError)            UNAVAILABLE (retryable)
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Self, TypeVar

from tunery.settings import parse_settings as parse_katib_settings
from tunery.trials import Objective, ObjectiveType, Observation, StopDecision, TrialCondition

# -- errors --------------------------------------------------------------------------------------


class EarlyStopError(Exception):
    """Root of the earlystop package's errors."""

    def __str__(self) -> str:  # KeyError subclasses would quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class InvalidSettingsError(EarlyStopError, ValueError):
    """An early-stopping setting is unknown or has a bad value."""


class UnknownAlgorithmError(EarlyStopError, LookupError):
    """No early stopper is registered under that name."""


class InvalidRequestError(EarlyStopError, ValueError):
    """A request is malformed: no objective metric, bad ``db_manager_address``, ..."""


class TrialNotFoundError(EarlyStopError, KeyError):
    """The named trial does not exist."""


class NoStoreError(EarlyStopError):
    """The operation needs a store and the service was started without one."""


class ObservationsUnavailableError(EarlyStopError):
    """Observation logs could not be read (DBManager or database down, timeout); retryable."""


# -- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EarlyStoppingSettings:
    """Base of every stopper's typed settings. Subclasses add defaulted fields and check them
    in ``__post_init__``, raising :class:`InvalidSettingsError` with Katib's message."""

    def as_pairs(self) -> tuple[tuple[str, str], ...]:
        """The settings as Katib's name/value strings (every field, defaults included)."""
        return tuple((f.name, str(getattr(self, f.name))) for f in dataclasses.fields(self))


SettingsT = TypeVar("SettingsT", bound=EarlyStoppingSettings)


def require_int(name: str, value: object) -> int:
    """``value`` if it is a true int (not a bool), else :class:`InvalidSettingsError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSettingsError(f"{name} must be an integer, got {value!r}")
    return value


def parse_settings(
    settings_type: type[SettingsT],
    raw: Mapping[str, str] | Iterable[tuple[str, str]],
    algorithm: str,
) -> SettingsT:
    """Typed settings from Katib's name/value strings (by :mod:`tunery.settings`).

    Raises:
        InvalidSettingsError: an unknown name ("unknown setting X for algorithm Y"), a name
            given twice, a value that does not parse ("failed to validate X(V): reason"), or
            a value the settings type rejects (its own message, e.g. Katib's
            "start_step must be greater or equal than one (>=1)").
    """
    return parse_katib_settings(settings_type, raw, algorithm, InvalidSettingsError)


# -- curves and rules ----------------------------------------------------------------------------


def finite_value(observation: Observation) -> float | None:
    """The observation's value when it is a finite number; None for NaN, ±inf, unparsable."""
    value = observation.numeric
    if value is None or not math.isfinite(value):
        return None
    return value


class RunningCurve:
    """What a stopper sees of a running trial: O(1) to extend by one observation.

    ``steps`` counts the objective reports so far (every report is a step, whatever its
    value); ``best`` is the best finite value among them in the objective's direction, None
    while there is none; ``latest`` the most recent finite value by report order.
    """

    __slots__ = ("best", "latest", "maximize", "metric_name", "steps")

    def __init__(self, objective: Objective) -> None:
        self.metric_name = objective.metric_name
        self.maximize = objective.type is ObjectiveType.MAXIMIZE
        self.steps = 0
        self.best: float | None = None
        self.latest: float | None = None

    def add(self, observation: Observation) -> None:
        """Count one report; reports of other metrics are ignored."""
        if observation.metric_name != self.metric_name:
            return
        self.steps += 1
        value = finite_value(observation)
        if value is None:
            return
        self.latest = value
        best = self.best
        if best is None or (value > best if self.maximize else value < best):
            self.best = value

    def extend(self, observations: Iterable[Observation]) -> Self:
        for observation in observations:
            self.add(observation)
        return self


class Comparison(enum.Enum):
    """How a Katib sidecar compares the trial's best value with a rule's value."""

    EQUAL = "equal"
    LESS = "less"
    GREATER = "greater"


@dataclass(frozen=True)
class StopRule:
    """Katib's wire form of a threshold: stop when ``best <comparison> value`` at the
    ``start_step``-th report of ``metric_name`` (a Katib sidecar checks it once, then)."""

    metric_name: str
    value: float
    comparison: Comparison
    start_step: int


class StopPolicy(abc.ABC):
    """An early stopper digested against one snapshot of the completed trials.

    Immutable and thread-safe: many running trials may share one.
    """

    objective: Objective

    @abc.abstractmethod
    def decide_curve(self, curve: RunningCurve) -> StopDecision:
        """Stop or continue the trial whose objective reports are summarised in ``curve``."""

    @abc.abstractmethod
    def rules(self) -> list[StopRule]:
        """The thresholds a Katib sidecar can apply to a new trial; [] while undecided."""

    def decide(self, observations: Iterable[Observation]) -> StopDecision:
        """Judge a running trial from its objective observations so far (O(n) in them)."""
        return self.decide_curve(RunningCurve(self.objective).extend(observations))


class EarlyStopper(abc.ABC):
    """An early-stopping algorithm. Register it with one line in ``earlystop.REGISTRY``.

    Class attributes:
        name: the Katib ``earlyStopping.algorithmName``.
        settings_type: the frozen settings dataclass.
        compared_conditions: the finished trials :meth:`prepare` is given (medianstop: the
            Succeeded ones; asha also the EarlyStopped ones, which reached lower rungs).
    """

    name: ClassVar[str]
    settings_type: ClassVar[type[EarlyStoppingSettings]] = EarlyStoppingSettings
    compared_conditions: ClassVar[frozenset[TrialCondition]] = frozenset(
        {TrialCondition.SUCCEEDED}
    )

    def __init__(self, settings: EarlyStoppingSettings | None = None) -> None:
        if settings is None:
            settings = self.settings_type()
        if not isinstance(settings, self.settings_type):
            raise InvalidSettingsError(
                f"{self.name} needs {self.settings_type.__name__}, got {type(settings).__name__}"
            )
        self.settings = settings

    @classmethod
    def from_settings(cls, raw: Mapping[str, str] | Iterable[tuple[str, str]]) -> Self:
        """The stopper configured by Katib's name/value strings.

        Raises:
            InvalidSettingsError: with Katib's message (see :func:`parse_settings`).
        """
        return cls(parse_settings(cls.settings_type, raw, cls.name))

    @abc.abstractmethod
    def prepare(
        self, objective: Objective, completed: Iterable[Sequence[Observation]]
    ) -> StopPolicy:
        """Digest the completed trials' objective observations (one sequence per trial;
        reports of other metrics are ignored) into a policy for running trials."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"
