"""``hyperband``: Katib's Hyperband (Li et al., JMLR 2018) over a resource parameter.

Registered in ``suggestion.algorithms.REGISTRY``; called by the suggestion service. Settings
are Katib's: ``resource_name`` (the parameter that carries the budget, e.g. ``num-epochs``),
``r_l`` (the largest resource, R) and ``eta`` (default 3), plus the state names Katib's
hyperband writes into ``GetSuggestionsReply.algorithm`` (``s_max``, ``b_l``, ``r``, ``n``,
``current_s``, ``current_i``, ``evaluating_trials``), which Katib's controller merges back into
the settings of its next request; they are accepted and reported, never trusted.

Brackets and rungs, as Katib's ``pkg/suggestion/v1beta1/hyperband/service.py`` computes them
(:func:`schedule`): ``s_max = floor(log(r_l) / log(eta))``; brackets ``s = s_max .. 0``; bracket
``s`` samples ``n = ceil((s_max+1) * eta**s / (s+1))`` configurations at resource
``int(r)``, ``r = r_l * eta**-s`` (its master rung), then rung ``i+1`` (``i < s``) promotes the
best ``ceil(ceil(n * eta**-i) / eta)`` of rung ``i`` with the resource set to
``int(r * eta**(i+1))``; every other parameter is copied. A promotion rung waits until the
whole previous rung has finished.

State: none is kept. The schedule is a pure function of the settings, and the trials of a
request (in creation order) are laid onto it rung by rung, so any server instance, after any
restart, knows which rung the next trial belongs to. Differences from Katib, on purpose:

- Katib sets a master rung's size to the request's count (its "hack to get current request
  number"), so the schedule depends on the controller's batching; here it is always Hyperband's
  ``n``, filled over as many requests as it takes.
- Katib raises (gRPC UNKNOWN) when a trial of the previous rung is not Succeeded; here a rung
  still running raises :class:`NotReadyError` (the controller waits and asks again), and only
  Succeeded trials with a value are promoted: a failed or early-stopped trial is dropped (the
  rung is smaller, deterministically).
- ``s_max`` tolerates rounding (``log(1000)/log(10)`` is 2.9999999999999996 in floating point;
  Katib gets 2, here 3). ``eta`` must be an integer >= 2 and ``r_l`` at least 1 (Katib falls
  back to 3 for eta <= 0, divides by zero at eta 1, and gets resource 0 for r_l < 1).
- After the last bracket it raises :class:`SpaceExhaustedError` (the controller ends the
  experiment with SuggestionEndReached) instead of an empty reply.

The resource parameter may be declared with any feasible range (Katib's example declares
``num-epochs`` as int [1, 1]): its values come from the schedule, not from the range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from suggestion.algorithms._distinct import indexed_prior
from suggestion.algorithms._encoding import encoding_for
from suggestion.algorithms.base import (
    Algorithm,
    AlgorithmSettings,
    InvalidSettingsError,
    NotReadyError,
    SpaceExhaustedError,
    SuggestRequest,
    UnsupportedSpaceError,
    refuse_conditional,
)
from tunery.space import Assignment, ParameterType, SearchSpace
from tunery.trials import Objective, ObjectiveType, TrialCondition, TrialResult

_LOG_TOLERANCE = 1e-9


@dataclass(frozen=True)
class HyperbandSettings(AlgorithmSettings):
    """Katib's hyperband settings; the state fields are what its service reports back."""

    resource_name: str = ""
    r_l: float | None = None
    eta: float = 3.0
    s_max: int | None = None
    b_l: float | None = None
    r: float | None = None
    n: int | None = None
    current_s: int | None = None
    current_i: int | None = None
    evaluating_trials: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.r_l is not None and not (math.isfinite(self.r_l) and self.r_l >= 1):
            raise InvalidSettingsError(
                f"r_l must be a positive float number (the largest resource, at least 1), "
                f"got {self.r_l:g}"
            )
        if not (math.isfinite(self.eta) and self.eta.is_integer() and self.eta >= 2):
            raise InvalidSettingsError(f"eta must be an integer >= 2, got {self.eta:g}")

    @property
    def eta_int(self) -> int:
        return int(self.eta)


@dataclass(frozen=True)
class Rung:
    """One rung of the schedule: ``size`` trials at ``resource``; rung 0 of a bracket samples
    new configurations, rung i > 0 promotes the best of rung i-1."""

    bracket: int  # s
    index: int  # i
    size: int
    resource: int


def s_max_of(r_l: float, eta: int) -> int:
    """Katib's ``int(log(r_l) / log(eta))``, robust to rounding just below an integer."""
    return int(math.log(r_l) / math.log(eta) + _LOG_TOLERANCE)


def bracket(s: int, s_max: int, r_l: float, eta: int) -> list[Rung]:
    """The rungs of bracket ``s`` (Katib's ``_new_hbParameters`` and ``_make_child_bracket``)."""
    n = math.ceil((s_max + 1) * (eta**s / (s + 1)))
    r = r_l * float(eta) ** (-s)
    rungs = [Rung(s, 0, n, int(r))]
    for i in range(s):
        n_i = math.ceil(n * float(eta) ** (-i))
        rungs.append(Rung(s, i + 1, math.ceil(n_i / eta), int(r * eta ** (i + 1))))
    return rungs


def schedule(r_l: float, eta: int) -> list[Rung]:
    """Every rung of every bracket, in the order Katib runs them (s_max down to 0)."""
    s_max = s_max_of(r_l, eta)
    return [rung for s in range(s_max, -1, -1) for rung in bracket(s, s_max, r_l, eta)]


@dataclass(frozen=True)
class Position:
    """Where a history stands on the schedule: ``rung`` is being filled (None: all done),
    ``start`` is the index of its first trial, ``size`` its actual size, ``sources`` the
    trials of the previous rung when it is a promotion rung."""

    rung: Rung | None
    start: int
    size: int
    sources: tuple[int, ...] = ()


def _promotable(trial: TrialResult) -> bool:
    return trial.condition is TrialCondition.SUCCEEDED and trial.value is not None


def ranked(
    trials: Sequence[TrialResult], indices: Sequence[int], objective: Objective
) -> list[int]:
    """``indices`` of promotable trials, best first (ties: creation order)."""
    sign = -1.0 if objective.type is ObjectiveType.MAXIMIZE else 1.0
    ok = [i for i in indices if _promotable(trials[i]) and math.isfinite(trials[i].value or 0.0)]
    return sorted(ok, key=lambda i: (sign * float(trials[i].value or 0.0), i))


def locate(
    rungs: Sequence[Rung], trials: Sequence[TrialResult], objective: Objective
) -> list[Position]:
    """Lay ``trials`` (creation order) onto ``rungs``; one Position per rung reached.

    A promotion rung's actual size is ``min(planned, promotable trials of the previous rung)``,
    known once that rung has finished; the walk stops at the first rung that is not full (the
    last Position) or, when the previous rung of a promotion rung still runs, at that rung
    with ``size`` -1 (not ready).
    """
    out: list[Position] = []
    start = 0
    previous: tuple[int, ...] = ()
    for rung in rungs:
        if rung.index == 0:
            size, sources = rung.size, ()
        else:
            if any(trials[i].is_pending for i in previous):
                out.append(Position(rung, start, -1, previous))
                return out
            sources = tuple(ranked(trials, previous, objective)[: rung.size])
            size = len(sources)
        out.append(Position(rung, start, size, sources))
        if start + size > len(trials):
            return out
        previous = tuple(range(start, start + size))
        start += size
    out.append(Position(None, start, 0))
    return out


class Hyperband(Algorithm):
    """Katib's hyperband: successive halving brackets over ``resource_name``."""

    name = "hyperband"
    settings_type = HyperbandSettings
    settings: HyperbandSettings
    capabilities = frozenset({"staged", "resource"})

    def __init__(self, settings: AlgorithmSettings | None = None) -> None:
        super().__init__(settings)
        self._cache: dict[str, object] = {}
        self._last: list[Position] = []

    @classmethod
    def validate(
        cls,
        space: SearchSpace,
        objective: Objective,
        settings: AlgorithmSettings,
        max_trial_count: int | None = None,
    ) -> None:
        assert isinstance(settings, HyperbandSettings)
        refuse_conditional(cls.name, space, "use asha early stopping with tpe or random")
        if settings.r_l is None or not settings.resource_name:
            raise InvalidSettingsError("r_l and resource_name must be set.")
        if settings.resource_name not in space.names:
            raise InvalidSettingsError(
                f"value of resource_name setting must be in parameters: "
                f"{settings.resource_name!r} is not one of {', '.join(space.names)}"
            )
        resource = space[settings.resource_name]
        if resource.type is ParameterType.CATEGORICAL:
            raise InvalidSettingsError(
                f"resource_name {settings.resource_name!r} names a categorical parameter; "
                "it must be int, double or discrete (it carries the resource)"
            )
        others = [p for p in space if p.name != settings.resource_name]
        if not others:
            raise UnsupportedSpaceError(
                "hyperband needs a parameter to tune besides the resource parameter "
                f"{settings.resource_name!r}"
            )
        largest = max(rung.size for rung in schedule(settings.r_l, settings.eta_int))
        size = SearchSpace(tuple(others)).grid_size()
        if size is not None and size < largest:
            raise UnsupportedSpaceError(
                f"hyperband's first bracket samples {largest} configurations, but the space "
                f"without {settings.resource_name!r} has only {size}"
            )

    @classmethod
    def validate_parallelism(
        cls, settings: AlgorithmSettings, parallel_trial_count: int | None
    ) -> None:
        assert isinstance(settings, HyperbandSettings)
        if settings.r_l is None:
            return
        eta = settings.eta_int
        least = math.ceil(eta ** s_max_of(settings.r_l, eta))
        if parallel_trial_count is not None and parallel_trial_count < least:
            raise InvalidSettingsError(f"parallelTrialCount must be not less than {least}.")

    def feasible(self, space: SearchSpace, assignment: Assignment) -> bool:
        name = self.settings.resource_name
        if set(assignment) != set(space.names):
            return False
        return all(p.contains(assignment[p.name]) for p in space if p.name != name)

    def rungs(self) -> list[Rung]:
        assert self.settings.r_l is not None
        return schedule(self.settings.r_l, self.settings.eta_int)

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        self.validate(request.space, request.objective, self.settings)
        trials = request.trials
        positions = locate(self.rungs(), trials, request.objective)
        self._last = positions
        out: list[Assignment] = []
        index = len(trials)  # the index the next assignment will have
        for pos in positions:
            if len(out) >= request.count:
                break
            if pos.rung is None:
                break
            if pos.size < 0:
                waiting = sum(trials[i].is_pending for i in pos.sources)
                raise NotReadyError(
                    f"hyperband bracket s={pos.rung.bracket} rung {pos.rung.index} waits for "
                    f"{waiting} running trial(s) of rung {pos.rung.index - 1}; "
                    f"{len(out)} of {request.count} assignments can be made now"
                )
            end = pos.start + pos.size
            if index >= end:
                continue
            take = min(end - index, request.count - len(out))
            offset = index - pos.start
            if pos.rung.index == 0:
                out += self._sample(request, out, index, take, pos.rung.resource)
            else:
                for source in pos.sources[offset : offset + take]:
                    out.append(
                        self._with_resource(
                            request.space, trials[source].assignment, pos.rung.resource
                        )
                    )
            index += take
        if len(out) < request.count:
            if positions[-1].rung is not None:
                raise NotReadyError(
                    f"hyperband can make {len(out)} of {request.count} assignments now"
                )
            raise SpaceExhaustedError(
                f"hyperband has run all its brackets ({len(trials)} trials); "
                "its schedule is exhausted"
            )
        return out

    def _with_resource(self, space: SearchSpace, base: Assignment, resource: int) -> Assignment:
        name = self.settings.resource_name
        parameter = space[name]
        value: int | float = resource
        if parameter.type is ParameterType.DOUBLE:
            value = float(resource)
        elif parameter.type is ParameterType.DISCRETE:
            value = next((v for v in parameter.values if v == resource), resource)  # type: ignore[assignment]
        return {**base, name: value}

    def _sample(
        self,
        request: SuggestRequest,
        chosen: list[Assignment],
        first_index: int,
        count: int,
        resource: int,
    ) -> list[Assignment]:
        name = self.settings.resource_name
        others = SearchSpace(tuple(p for p in request.space if p.name != name))
        encoding, _ = encoding_for(self._cache, others)
        seen = {encoding.key(t.assignment) for t in request.trials}
        seen |= {encoding.key(a) for a in chosen}
        drawn = indexed_prior(encoding, count, seen, self.seed(request), first_index)
        return [self._with_resource(request.space, a, resource) for a in drawn]

    def reply_settings(self, request: SuggestRequest) -> list[tuple[str, str]]:
        """Katib's state names: where the schedule stands after this suggestion."""
        settings = self.settings
        assert settings.r_l is not None
        eta = settings.eta_int
        s_max = s_max_of(settings.r_l, eta)
        positions = locate(self.rungs(), request.trials, request.objective)
        current = next((p for p in reversed(positions) if p.rung is not None), None)
        if positions[-1].rung is None or current is None:
            s, i, n, r, evaluating = -1, 0, 0, 0.0, 0
        else:
            rung = current.rung
            assert rung is not None
            s, i = rung.bracket, rung.index
            n = bracket(s, s_max, settings.r_l, eta)[0].size
            r = settings.r_l * float(eta) ** (-s)
            evaluating = len(current.sources)
        return [
            ("eta", str(eta)),
            ("s_max", str(s_max)),
            ("r_l", str(settings.r_l)),
            ("b_l", str((s_max + 1) * settings.r_l)),
            ("r", str(r)),
            ("n", str(n)),
            ("current_s", str(s)),
            ("current_i", str(i)),
            ("resource_name", settings.resource_name),
            ("evaluating_trials", str(evaluating)),
        ]
