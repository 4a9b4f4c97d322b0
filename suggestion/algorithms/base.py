"""The Algorithm interface every suggestion algorithm implements, and typed settings parsing.

Called by ``suggestion.service`` (through the registry in ``suggestion.algorithms``) and by the
conformance tests. Algorithms import no grpc, no SQL, no kubernetes: they see a
:class:`SuggestRequest` of kernel types and return typed assignments.

Contract:
- ``suggest`` returns exactly ``request.count`` assignments, each inside ``request.space``
  (steps honoured, ints as ``int``), distinct from each other and from every trial in
  ``request.trials`` (pending ones included), unless the space is exhausted, in which case it
  raises :class:`SpaceExhaustedError` (finite spaces) instead of looping.
- Given the same settings, seed and request, the output is the same (deterministic).
- An instance may cache model state between calls for the same experiment (the service keeps
  one instance per experiment); a fresh instance given the same request must behave equally
  well (restart-safety). ``request.trials`` is always the whole history.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

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


class Algorithm(abc.ABC):
    """A suggestion algorithm. Register it with one line in ``suggestion.algorithms.REGISTRY``.

    Class attributes:
        name: the Katib ``algorithmName``.
        settings_type: the frozen settings dataclass.
        capabilities: e.g. ``{"finite"}`` for algorithms that may exhaust a finite space.
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

    @abc.abstractmethod
    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        """Return ``request.count`` new assignments (see the module contract)."""

    def seed(self, request: SuggestRequest) -> int:
        """This experiment's seed: ``random_state`` or one derived from the experiment name."""
        return derive_seed(self.settings.random_state, request.experiment_name)


def _convert(setting: str, raw: str, annotation: Any) -> Any:
    """Convert one raw string to the field's type (int, float, str, bool, Optional, Literal)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if raw.strip().lower() in ("none", "null", "") and len(non_none) != len(args):
            return None
        return _convert(setting, raw, non_none[0])
    if origin is typing.Literal:
        if raw not in args:
            raise ValueError(f"must be one of {', '.join(map(str, args))}")
        return raw
    if annotation is bool:
        low = raw.strip().lower()
        if low not in ("true", "false", "1", "0"):
            raise ValueError("must be true or false")
        return low in ("true", "1")
    if annotation is int:
        value = float(raw)
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    if annotation is float:
        return float(raw)
    return raw


def parse_settings(
    settings_type: type[AlgorithmSettings], raw: Mapping[str, str], algorithm: str
) -> AlgorithmSettings:
    """Build typed settings from Katib's name/value strings.

    Raises:
        InvalidSettingsError: an unknown name ("unknown setting X for algorithm Y"), a value
            that does not parse ("failed to validate X(V): reason"), or a value the settings
            type rejects (its own message).
    """
    hints = typing.get_type_hints(settings_type)
    fields = {f.name for f in dataclasses.fields(settings_type)}
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in fields:
            raise InvalidSettingsError(f"unknown setting {name} for algorithm {algorithm}")
        try:
            kwargs[name] = _convert(name, value, hints[name])
        except ValueError as exc:
            raise InvalidSettingsError(f"failed to validate {name}({value}): {exc}") from None
    return settings_type(**kwargs)
