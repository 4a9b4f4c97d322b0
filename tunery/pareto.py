"""Pareto dominance, non-dominated sorting and hypervolume for multi-objective experiments.

Kernel module (numpy only). Called by the multi-objective algorithms in
``suggestion.algorithms``, the controller's status (the ``paretoFront`` extension), the SDK's
``TuneResult.pareto_front``, the CLI's ``tunery best``, the visualization and
``bench/multiobjective.py``. Every function takes points in *minimisation* form: an
``(n, m)`` array of losses, one row per trial, one column per objective (a maximised
objective is negated by the caller, see :meth:`tunery.trials.Objective.losses`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_matrix(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    y = np.asarray(points, dtype=float)
    if y.ndim != 2:
        y = y.reshape(len(y), -1)
    return y


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` everywhere and better somewhere (minimisation)."""
    aa, bb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(aa <= bb) and np.any(aa < bb))


def nondominated_mask(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point dominates (duplicates all stay)."""
    y = _as_matrix(points)
    n = len(y)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    for i in range(n):
        if not keep[i]:
            continue
        le = np.all(y <= y[i], axis=1) & np.any(y < y[i], axis=1)
        if le.any():
            keep[i] = False
            continue
        # i dominates these: drop them now so later rows skip the work
        dominated = np.all(y[i] <= y, axis=1) & np.any(y[i] < y, axis=1)
        keep &= ~dominated
    return keep


def nondominated_ranks(
    points: Sequence[Sequence[float]] | np.ndarray, enough: int | None = None
) -> np.ndarray:
    """Front index of each point (0 = the Pareto front, 1 = the front once 0 is removed...).

    With ``enough``, sorting stops once that many points are ranked; the rest get one rank
    past the last front found (what NSGA-II's survival needs, at a fraction of the cost).
    """
    y = _as_matrix(points)
    ranks = np.full(len(y), -1, dtype=int)
    left = np.arange(len(y))
    rank = 0
    while len(left):
        if enough is not None and len(y) - len(left) >= enough:
            ranks[left] = rank
            break
        mask = nondominated_mask(y[left])
        ranks[left[mask]] = rank
        left = left[~mask]
        rank += 1
    return ranks


def hypervolume(
    points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float] | np.ndarray
) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (minimisation).

    Exact: a sweep for two objectives, recursive slicing for more (fine for the front sizes of
    a tuning run, a few hundred points at three objectives). Points not strictly better than
    the reference in every objective contribute nothing.
    """
    y = _as_matrix(points)
    ref = np.asarray(reference, dtype=float)
    if len(y) == 0:
        return 0.0
    y = y[np.all(y < ref, axis=1)]
    if len(y) == 0:
        return 0.0
    y = y[nondominated_mask(y)]
    return _hv(np.unique(y, axis=0), ref)


def _hv(y: np.ndarray, ref: np.ndarray) -> float:
    m = y.shape[1]
    if m == 1:
        return float(ref[0] - y[:, 0].min())
    if m == 2:
        order = np.argsort(y[:, 0], kind="stable")
        ys = y[order]
        volume, best_second = 0.0, ref[1]
        for a, b in ys:
            if b < best_second:
                volume += (ref[0] - a) * (best_second - b)
                best_second = b
        return float(volume)
    # slice along the last objective: between consecutive levels, the front of the points
    # at or below the level, projected onto the other objectives
    order = np.argsort(y[:, -1], kind="stable")
    ys = y[order]
    volume = 0.0
    for i in range(len(ys)):
        top = ys[i + 1, -1] if i + 1 < len(ys) else ref[-1]
        height = top - ys[i, -1]
        if height <= 0:
            continue
        slab = ys[: i + 1, :-1]
        slab = slab[nondominated_mask(slab)]
        volume += height * _hv(slab, ref[:-1])
    return float(volume)


def hypervolume_contributions(
    points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Each point's exclusive hypervolume (what the front loses without it)."""
    y = _as_matrix(points)
    total = hypervolume(y, reference)
    out = np.empty(len(y))
    for i in range(len(y)):
        out[i] = total - hypervolume(np.delete(y, i, axis=0), reference)
    return out


def crowding_distance(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance within one front (boundary points get infinity)."""
    y = _as_matrix(points)
    n, m = y.shape
    out = np.zeros(n)
    if n <= 2:
        out[:] = np.inf
        return out
    for j in range(m):
        order = np.argsort(y[:, j], kind="stable")
        col = y[order, j]
        span = col[-1] - col[0]
        out[order[0]] = out[order[-1]] = np.inf
        if span <= 0:
            continue
        out[order[1:-1]] += (col[2:] - col[:-2]) / span
    return out
