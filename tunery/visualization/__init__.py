"""Plots of an experiment as plotly figures, for Python scripts and Jupyter.

Public face (``from tunery.visualization import plot_optimization_history``). Each function
takes an experiment name (read from ``db``, a store URL, default as ``tunery`` uses, or from an
open ``store``) or a :class:`~tunery.visualization.data.Snapshot`, and returns a
``plotly.graph_objects.Figure`` (shown inline by Jupyter, ``fig.show()`` elsewhere). The data
and the figure specifications are the dashboard's own (:mod:`.data`, :mod:`.figures`), so a
plot here and on the dashboard agree point by point. Needs ``pip install 'tunery[dashboard]'``.

Errors: ``tunery.store.NotFoundError`` for an unknown experiment,
:class:`~tunery.visualization.data.DataError` for an unknown parameter.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tunery.visualization import data as _data
from tunery.visualization import figures as _figures
from tunery.visualization.data import DataError, Snapshot, load_snapshot

if TYPE_CHECKING:
    from collections.abc import Iterator

    import plotly.graph_objects as go

    from tunery.store import Store

__all__ = [
    "DataError",
    "Snapshot",
    "load_snapshot",
    "plot_contour",
    "plot_edf",
    "plot_intermediate_values",
    "plot_optimization_history",
    "plot_parallel_coordinate",
    "plot_param_importances",
    "plot_pareto_front",
    "plot_rank",
    "plot_slice",
    "plot_timeline",
]

Experiment = str | Snapshot


@contextmanager
def _opened(experiment: Experiment, db: str | None, store: Store | None) -> Iterator[Any]:
    """(store, snapshot) for the arguments; a store opened here is closed afterwards."""
    if store is not None:
        yield (
            store,
            experiment if isinstance(experiment, Snapshot) else load_snapshot(store, experiment),
        )
        return
    from tunery.store import open_store

    opened = open_store(db)
    try:
        snapshot = (
            experiment if isinstance(experiment, Snapshot) else load_snapshot(opened, experiment)
        )
        yield opened, snapshot
    finally:
        opened.close()


def _figure(spec: dict[str, Any]) -> go.Figure:
    import plotly.graph_objects as go

    return go.Figure(spec)


def plot_optimization_history(
    experiment: Experiment, *, db: str | None = None, store: Store | None = None
) -> go.Figure:
    """Objective value of every trial and the best value so far."""
    with _opened(experiment, db, store) as (_, snap):
        return _figure(_figures.history_figure(_data.optimization_history(snap)))


def plot_pareto_front(
    experiment: Experiment,
    *,
    x: str | None = None,
    y: str | None = None,
    db: str | None = None,
    store: Store | None = None,
) -> go.Figure:
    """Multi-objective experiments: objective ``x`` against ``y`` (default the first two),
    the Pareto front (by every objective) highlighted over the dominated trials."""
    with _opened(experiment, db, store) as (_, snap):
        return _figure(_figures.pareto_figure(_data.pareto_front(snap, x, y)))


def plot_parallel_coordinate(
    experiment: Experiment,
    *,
    db: str | None = None,
    store: Store | None = None,
    limit: int | None = _data.PARALLEL_TRIALS,
) -> go.Figure:
    """Every parameter and the objective as parallel axes, one line per trial (beyond
    ``limit`` trials the best half and a sample; ``limit=None`` draws all)."""
    with _opened(experiment, db, store) as (_, snap):
        return _figure(_figures.parallel_figure(_data.parallel_coordinates(snap, limit)))


def plot_param_importances(
    experiment: Experiment, *, db: str | None = None, store: Store | None = None
) -> go.Figure:
    """Random-forest (mean decrease in impurity) importance of each parameter."""
    with _opened(experiment, db, store) as (_, snap):
        return _figure(_figures.importance_figure(_data.importance(snap)))


def plot_intermediate_values(
    experiment: Experiment,
    *,
    db: str | None = None,
    store: Store | None = None,
    limit: int = _data.INTERMEDIATE_TRIALS,
) -> go.Figure:
    """Reported objective values per step for up to ``limit`` trials; early-stopped trials
    dotted and marked, the median-stop threshold dashed."""
    with _opened(experiment, db, store) as (opened, snap):
        return _figure(
            _figures.intermediate_figure(_data.intermediate_values(opened, snap, limit))
        )


def plot_slice(
    experiment: Experiment, *, db: str | None = None, store: Store | None = None
) -> go.Figure:
    """The objective against each parameter."""
    with _opened(experiment, db, store) as (_, snap):
        return _figure(_figures.slice_figure(_data.slices(snap)))


def plot_contour(
    experiment: Experiment,
    x: str | None = None,
    y: str | None = None,
    *,
    db: str | None = None,
    store: Store | None = None,
) -> go.Figure:
    """The objective interpolated over two parameters (default: the spec's first two)."""
    with _opened(experiment, db, store) as (_, snap):
        return _figure(_figures.contour_figure(_data.contour(snap, x, y)))


def plot_rank(
    experiment: Experiment, *, db: str | None = None, store: Store | None = None
) -> go.Figure:
    """Trials coloured by the rank of their objective value over parameter pairs (the
    objective against the parameter when there is only one), as optuna's ``plot_rank``."""
    with _opened(experiment, db, store) as (_, snap):
        return _figure(_figures.rank_figure(_data.ranks(snap)))


def plot_edf(
    experiment: Experiment, *, db: str | None = None, store: Store | None = None
) -> go.Figure:
    """Empirical distribution function of the objective."""
    with _opened(experiment, db, store) as (_, snap):
        return _figure(_figures.edf_figure(_data.edf(snap)))


def plot_timeline(
    experiment: Experiment, *, db: str | None = None, store: Store | None = None
) -> go.Figure:
    """Each trial from start to end (now while running), by condition, GPUs in the hover."""
    with _opened(experiment, db, store) as (_, snap):
        return _figure(_figures.timeline_figure(_data.timeline(snap)))
