"""Shared pieces of the multi-objective algorithms (``nsga2``, ``motpe``, ``parego``).

Called by those modules only. Reads a request's completed trials that carry every objective's
value (``TrialResult.values``) as a loss matrix in minimisation form, and rewrites a
multi-objective request as a single-objective one whose value is a scalar score, so the
model-based algorithms (TPE, the GP) can be reused as they are: MOTPE scores by Pareto rank,
ParEGO by a random augmented Chebyshev scalarisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from suggestion.algorithms.base import SuggestRequest
from tunery.trials import Objective, ObjectiveType, TrialResult

SCORE_METRIC = "tunery-scalarised-objective"


def loss_matrix(request: SuggestRequest) -> tuple[list[TrialResult], np.ndarray]:
    """The completed trials with all objective values finite, and their ``(n, m)`` losses.

    A single-objective request reads ``value`` as a one-column matrix.
    """
    objective = request.objective
    m = len(objective.terms)
    trials: list[TrialResult] = []
    rows: list[tuple[float, ...]] = []
    for t in request.trials:
        if not t.is_completed_with_value:
            continue
        values = t.values if m > 1 else (t.value,)
        if values is None or len(values) != m:
            continue
        if not all(v is not None and math.isfinite(v) for v in values):
            continue
        trials.append(t)
        rows.append(objective.losses(values))  # type: ignore[arg-type]
    return trials, np.asarray(rows, dtype=float).reshape(len(rows), m)


def normalised(y: np.ndarray) -> np.ndarray:
    """Losses scaled to [0, 1] per objective by the observed range (flat columns -> 0)."""
    if len(y) == 0:
        return y
    lo, hi = y.min(axis=0), y.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (y - lo) / span


def scalar_request(
    request: SuggestRequest, trials: Sequence[TrialResult], scores: np.ndarray
) -> SuggestRequest:
    """``request`` as a single-objective, minimised request whose completed trials have the
    given ``scores`` (completed trials without every objective value only block their points,
    pending trials stay pending). Assignment objects are reused, so the inner algorithm's
    per-trial encoding cache keeps working."""
    score_of = {id(t): float(s) for t, s in zip(trials, scores, strict=True)}
    rewritten = []
    for t in request.trials:
        if t.is_pending:
            rewritten.append(t)
        else:
            rewritten.append(TrialResult(t.name, t.assignment, t.condition, score_of.get(id(t))))
    return SuggestRequest(
        space=request.space,
        objective=Objective(ObjectiveType.MINIMIZE, SCORE_METRIC),
        trials=rewritten,
        count=request.count,
        experiment_name=request.experiment_name,
        max_trial_count=request.max_trial_count,
        parallel_trial_count=request.parallel_trial_count,
    )
