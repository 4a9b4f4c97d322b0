"""``pbt``: population based training, with Katib's settings, labels and generations.

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. Trials are
members of generations. Generation 0 is drawn from the search space; each later member starts
from a checkpoint of a member of the generation before it (its *parent*) and either

- *exploits*: its base member ranks in the bottom ``truncation_threshold`` quantile of the
  previous generation, so it takes the hyperparameters **and the checkpoint** of a member in
  the top quantile (Katib keeps the bottom member's own checkpoint and copies only the values;
  copying the weights too is what population based training means, so tunery does);
- or *explores*: it continues its base member's checkpoint with perturbed values (x0.8 or
  x1.2 for numbers, a neighbouring value for lists), or, when ``resample_probability`` is
  set, with each value redrawn from the space with that probability.

Every suggestion carries its trial name (``<experiment>-<8 characters>``; Katib's
``<experiment>-<uuid4>`` is too long for a Kubernetes label value) and the labels
``pbt.suggestion.katib.kubeflow.org/generation`` and ``.../parent`` (the trial whose
checkpoint folder is copied into the new trial's before it starts; see
``controller.checkpoints``), plus tunery's ``pbt.suggestion.tunery.dev/base`` (the member of
the previous generation it replaces) and ``.../retry-of``. The controller sends the labels back
with every trial, so the algorithm keeps no state: each request rebuilds the generations from
the trials' labels (Katib's service keeps them in memory and loses them on a restart).

Generations advance as in Katib: a new generation starts once the newest one has
``n_population`` members with an objective value; until then a free slot gets another member
of the newest generation (random in generation 0, a child of the previous generation later),
so no slot waits. Each member of the previous generation is a base once before any is a base
twice. Failed and killed trials are re-queued with the same values, generation and parent.
Each new member is drawn from a generator seeded by (seed, generation, its index in the
generation), so the output is a pure function of the request.

Settings: ``suggestion_trial_dir`` (where the trial reads and writes its checkpoint; the
controller mounts or substitutes the trial's own folder there), ``n_population`` (>= 5),
``truncation_threshold`` in [0, 1], ``resample_probability`` in [0, 1] (optional),
``random_state``. Unlike Katib, a double parameter needs no step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    InvalidSettingsError,
    SuggestedTrial,
    SuggestRequest,
    refuse_conditional,
)
from tunery.space import Assignment, Parameter, ParameterType, ParamValue, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

GENERATION_LABEL = "pbt.suggestion.katib.kubeflow.org/generation"
PARENT_LABEL = "pbt.suggestion.katib.kubeflow.org/parent"
BASE_LABEL = "pbt.suggestion.tunery.dev/base"
RETRY_LABEL = "pbt.suggestion.tunery.dev/retry-of"

REQUIRED_SETTINGS = ("suggestion_trial_dir", "n_population", "truncation_threshold")
_NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_RETRIED = (TrialCondition.FAILED, TrialCondition.KILLED)


@dataclass(frozen=True)
class PbtSettings(AlgorithmSettings):
    """Katib's pbt settings; the first three are required, as in Katib (checked by
    :meth:`Pbt.validate`, since settings are parsed one by one first)."""

    suggestion_trial_dir: str | None = None
    n_population: int | None = None
    truncation_threshold: float | None = None
    resample_probability: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.suggestion_trial_dir is not None and not self.suggestion_trial_dir.startswith("/"):
            raise InvalidSettingsError(
                f"Param(suggestion_trial_dir) should be an absolute path, "
                f"got {self.suggestion_trial_dir!r}"
            )
        if self.n_population is not None and self.n_population < 5:
            raise InvalidSettingsError("Param(n_population) should be >= 5")
        if self.truncation_threshold is not None and not 0 <= self.truncation_threshold <= 1:
            raise InvalidSettingsError(
                "Param(truncation_threshold) should be between 0 and 1, inclusive"
            )
        if self.resample_probability is not None and not 0 <= self.resample_probability <= 1:
            raise InvalidSettingsError(
                "Param(resample_probability) should be null to perturb at 0.8 or 1.2, "
                "or be between 0 and 1, inclusive, to resample"
            )


@dataclass
class Member:
    """One trial as a member of a generation (``score`` is maximised; None: no value)."""

    name: str
    assignment: Assignment
    generation: int
    condition: TrialCondition
    score: float | None
    parent: str | None = None
    base: str | None = None
    retry_of: str | None = None

    @property
    def failed(self) -> bool:
        return self.condition in _RETRIED


@dataclass
class Population:
    """The generations rebuilt from a request's trials (creation order kept)."""

    generations: dict[int, list[Member]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, trials: Sequence[TrialResult], maximize: bool) -> Population:
        out = cls()
        for t in trials:
            out.add(member_of(t, maximize))
        return out

    def add(self, member: Member) -> None:
        self.generations.setdefault(member.generation, []).append(member)
        self.names.add(member.name)

    @property
    def newest(self) -> int:
        return max(self.generations, default=0)

    def members(self, generation: int) -> list[Member]:
        return self.generations.get(generation, [])

    def scored(self, generation: int) -> list[Member]:
        return [m for m in self.members(generation) if m.score is not None]

    def unretried_failures(self) -> list[Member]:
        retried = {
            m.retry_of for ms in self.generations.values() for m in ms if m.retry_of is not None
        }
        return [
            m
            for g in sorted(self.generations)
            for m in self.generations[g]
            if m.failed and m.name not in retried
        ]


def member_of(trial: TrialResult, maximize: bool) -> Member:
    """A trial as a member: generation 0 and no parent where it carries no pbt labels."""
    labels = trial.labels
    try:
        generation = max(0, int(labels.get(GENERATION_LABEL, "0")))
    except ValueError:
        generation = 0
    score = None
    if trial.is_completed_with_value and trial.value is not None and math.isfinite(trial.value):
        score = trial.value if maximize else -trial.value
    return Member(
        trial.name,
        trial.assignment,
        generation,
        trial.condition,
        score,
        labels.get(PARENT_LABEL) or None,
        labels.get(BASE_LABEL) or None,
        labels.get(RETRY_LABEL) or None,
    )


@dataclass(frozen=True)
class Segments:
    """A generation split at the truncation quantiles: bases in ``bottom`` exploit a member of
    ``upper``; the others explore."""

    bottom: frozenset[str]
    upper: tuple[Member, ...]


def segment(pool: Sequence[Member], truncation_threshold: float) -> Segments:
    """Katib's split: below the ``truncation_threshold`` quantile is bottom; at or above the
    ``1 - truncation_threshold`` quantile is upper."""
    values = np.array([m.score for m in pool], dtype=float)
    low, high = np.quantile(values, (truncation_threshold, 1 - truncation_threshold))
    bottom = frozenset(m.name for m in pool if m.score is not None and m.score < low)
    upper = tuple(m for m in pool if m.score is not None and m.score >= high)
    return Segments(bottom, upper)


def sample_value(param: Parameter, rng: np.random.Generator) -> ParamValue:
    """A value drawn from the parameter's range: uniform (log-uniform for log distributions)
    then snapped to its step; a uniform choice of a list's values."""
    if not param.is_numeric_range:
        return param.values[int(rng.integers(len(param.values)))]
    assert param.low is not None and param.high is not None
    if param.distribution.is_log and param.low > 0:
        x = math.exp(rng.uniform(math.log(param.low), math.log(param.high)))
    elif param.type is ParameterType.INT:
        x = float(rng.integers(int(param.low), int(param.high) + 1))
    else:
        x = rng.uniform(float(param.low), float(param.high))
    return param.snap(x)


def perturb_value(param: Parameter, value: ParamValue, rng: np.random.Generator) -> ParamValue:
    """Katib's perturbation: numbers times 0.8 or 1.2, clipped and snapped to the step (an
    int or stepped value that would not move moves one step that way); list values move to a
    neighbour, wrapping around."""
    if not param.is_numeric_range:
        values = list(param.values)
        index = values.index(value) if value in values else 0
        return values[(index + (1 if rng.random() < 0.5 else -1)) % len(values)]
    factor = 0.8 if rng.random() < 0.5 else 1.2
    new = param.snap(float(value) * factor)
    if new == value:
        step = (
            param.step if param.step is not None else (1 if param.type is ParameterType.INT else 0)
        )
        new = param.snap(float(value) + (step if factor > 1 else -step))
    return new


class Pbt(Algorithm):
    """Population based training over generations of trials handing checkpoints on."""

    name = "pbt"
    settings_type = PbtSettings
    capabilities = frozenset({"repeats", "checkpoints"})

    @classmethod
    def validate(
        cls,
        space: SearchSpace,
        objective: Objective,
        settings: AlgorithmSettings,
        max_trial_count: int | None = None,
    ) -> None:
        """Katib's required settings are all given (each value was checked when parsed);
        conditional spaces are refused (a member's perturbed values keep its parameter set)."""
        refuse_conditional(cls.name, space, "use tpe, bayesianoptimization, random or grid")
        missing = [name for name in REQUIRED_SETTINGS if getattr(settings, name, None) is None]
        if missing:
            raise InvalidSettingsError(f"Required params missing: {', '.join(missing)}")

    @property
    def pbt_settings(self) -> PbtSettings:
        settings = self.settings
        assert isinstance(settings, PbtSettings)
        return settings

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        return [s.assignment for s in self.suggest_trials(request)]

    def suggest_trials(self, request: SuggestRequest) -> list[SuggestedTrial]:
        maximize = request.objective.type is ObjectiveType.MAXIMIZE
        population = Population.of(request.trials, maximize)
        seed = self.seed(request)
        out: list[SuggestedTrial] = []
        retries = population.unretried_failures()
        while len(out) < request.count:
            if retries:
                member = self._retry(population, retries.pop(0), request, seed)
            else:
                member = self._next(population, request, seed)
            population.add(member)
            out.append(_suggestion(member))
        return out

    # -- one new member ---------------------------------------------------------------------------

    def _next(self, population: Population, request: SuggestRequest, seed: int) -> Member:
        settings = self.pbt_settings
        assert settings.n_population is not None and settings.truncation_threshold is not None
        newest = population.newest
        if len(population.scored(newest)) >= settings.n_population:
            generation = newest + 1  # the newest generation is complete: breed the next one
        elif newest == 0:
            return self._seed_member(population, request, seed)
        else:
            generation = newest  # keep filling the newest generation from the one before
        index = len(population.members(generation))
        rng = np.random.default_rng([seed, generation, index])
        name = _new_name(request.experiment_name, population.names, rng)
        pool = population.scored(generation - 1)
        if not pool:  # no scored parent generation (unlabelled history): start afresh
            return self._seed_member(population, request, seed)
        uses: dict[str, int] = {m.name: 0 for m in pool}
        for m in population.members(generation):
            if m.base in uses and not m.failed:
                uses[m.base] += 1
        order = rng.permutation(len(pool))
        base = min((pool[i] for i in order), key=lambda m: uses[m.name])
        segments = segment(pool, settings.truncation_threshold)
        if base.name in segments.bottom and segments.upper:
            winner = segments.upper[int(rng.integers(len(segments.upper)))]
            return Member(
                name,
                dict(winner.assignment),
                generation,
                TrialCondition.CREATED,
                None,
                parent=winner.name,
                base=base.name,
            )
        return Member(
            name,
            self._explore(request.space, base.assignment, rng),
            generation,
            TrialCondition.CREATED,
            None,
            parent=base.name,
            base=base.name,
        )

    def _seed_member(self, population: Population, request: SuggestRequest, seed: int) -> Member:
        index = len(population.members(0))
        rng = np.random.default_rng([seed, 0, index])
        name = _new_name(request.experiment_name, population.names, rng)
        seen = {request.space.key(m.assignment) for m in population.members(0)}
        assignment: Assignment = {}
        for _ in range(16):  # avoid repeating a member where the space allows
            assignment = {p.name: sample_value(p, rng) for p in request.space}
            if request.space.key(assignment) not in seen:
                break
        return Member(name, assignment, 0, TrialCondition.CREATED, None)

    def _explore(
        self, space: SearchSpace, assignment: Mapping[str, ParamValue], rng: np.random.Generator
    ) -> Assignment:
        probability = self.pbt_settings.resample_probability
        out: dict[str, ParamValue] = {}
        for param in space:
            value = assignment[param.name]
            if probability is None:
                out[param.name] = perturb_value(param, value, rng)
            elif rng.random() < probability:
                out[param.name] = sample_value(param, rng)
            else:
                out[param.name] = value
        return out

    def _retry(
        self, population: Population, failed: Member, request: SuggestRequest, seed: int
    ) -> Member:
        index = len(population.members(failed.generation))
        rng = np.random.default_rng([seed, failed.generation, index, 1])
        return Member(
            _new_name(request.experiment_name, population.names, rng),
            dict(failed.assignment),
            failed.generation,
            TrialCondition.CREATED,
            None,
            parent=failed.parent,
            base=failed.base,
            retry_of=failed.name,
        )


def _new_name(experiment: str, taken: set[str], rng: np.random.Generator) -> str:
    prefix = experiment or "trial"
    while True:
        suffix = "".join(_NAME_ALPHABET[int(i)] for i in rng.integers(len(_NAME_ALPHABET), size=8))
        name = f"{prefix}-{suffix}"
        if name not in taken:
            return name


def _suggestion(member: Member) -> SuggestedTrial:
    labels = {GENERATION_LABEL: str(member.generation)}
    if member.parent is not None:
        labels[PARENT_LABEL] = member.parent
    if member.base is not None:
        labels[BASE_LABEL] = member.base
    if member.retry_of is not None:
        labels[RETRY_LABEL] = member.retry_of
    return SuggestedTrial(member.assignment, member.name, labels)
