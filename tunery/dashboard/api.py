"""The dashboard's JSON API under ``/api`` (OpenAPI document at ``/api/openapi.json``).

Called by the pages' JavaScript (:mod:`tunery.dashboard.static`) and by anyone scripting the
dashboard. Read-only unless the app was created with ``allow_actions``; then stop, budget and
delete go through :class:`controller.local_backend.LocalBackend`. Requests name experiments,
trials, columns and parameters; none of it reaches SQL other than as bound values through the
:class:`~tunery.store.Store` API. Errors map to HTTP once, in :mod:`tunery.dashboard.app`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response

from controller.local_backend import LocalBackend, is_completed
from tunery.dashboard.cache import SnapshotCache
from tunery.dashboard.security import ACTION_HEADER, log_file
from tunery.visualization import data, figures
from tunery.visualization.data import DataError

LOG_CHUNK = 256 * 1024
"""Most bytes of a trial's output one request returns."""

LOG_TAIL = 64 * 1024
"""Bytes of output a first request (no offset) returns: the end of the log."""

PlotKind = Literal[
    "history",
    "intermediate",
    "parallel",
    "importance",
    "slice",
    "contour",
    "rank",
    "edf",
    "timeline",
    "pareto",
]
PLOT_KINDS: tuple[str, ...] = PlotKind.__args__

WARM_EXPERIMENTS = 5
"""How many of the latest experiments :func:`warm_up` prepares."""

FIRST_SCREEN: tuple[str, ...] = ("history", "intermediate", "importance", "edf")
"""The plots on the experiment page's first screen (the first four of
:data:`tunery.dashboard.pages.PLOTS`), which :func:`warm_up` prepares first."""

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api")


@dataclass(frozen=True)
class Context:
    """What the routes share: the snapshots, the local backend, whether actions are on, and
    what fits the importance plot's forest (a worker process's, or in-process)."""

    cache: SnapshotCache
    backend: LocalBackend
    allow_actions: bool
    fit: data.ForestFit = data.forest_importances


def context(request: Request) -> Context:
    ctx: Context = request.app.state.context
    return ctx


Ctx = Annotated[Context, Depends(context)]
PlotX = Annotated[str | None, Query(description="contour: x parameter; pareto: x objective")]
PlotY = Annotated[str | None, Query(description="contour: y parameter; pareto: y objective")]


def _series(ctx: Context, name: str, kind: str, x: str | None, y: str | None) -> Any:
    snapshot = ctx.cache.get(name)
    if kind == "history":
        return data.optimization_history(snapshot)
    if kind == "intermediate":
        return data.intermediate_values(ctx.cache.store, snapshot)
    if kind == "parallel":
        return data.parallel_coordinates(snapshot)
    if kind == "slice":
        return data.slices(snapshot)
    if kind == "importance":
        return data.importance(snapshot, ctx.fit)
    if kind == "contour":
        return data.contour(snapshot, x, y)
    if kind == "rank":
        return data.ranks(snapshot)
    if kind == "edf":
        return data.edf(snapshot)
    if kind == "pareto":
        return data.pareto_front(snapshot, x, y)
    return data.timeline(snapshot)


_FIGURES = {
    "history": figures.history_figure,
    "intermediate": figures.intermediate_figure,
    "parallel": figures.parallel_figure,
    "slice": figures.slice_figure,
    "importance": figures.importance_figure,
    "contour": figures.contour_figure,
    "rank": figures.rank_figure,
    "edf": figures.edf_figure,
    "timeline": figures.timeline_figure,
    "pareto": figures.pareto_figure,
}


# -- read -------------------------------------------------------------------------------------


@router.get("/config", summary="What this dashboard allows")
def get_config(ctx: Ctx) -> dict[str, Any]:
    return {"actions": ctx.allow_actions}


@router.get("/experiments", summary="Every experiment's summary")
def list_experiments(ctx: Ctx) -> list[dict[str, Any]]:
    return [data.experiment_summary(r) for r in ctx.cache.experiments()]


@router.get("/experiments/{name}", summary="One experiment: summary, counts, parameters")
def get_experiment(name: str, ctx: Ctx) -> dict[str, Any]:
    snapshot = ctx.cache.get(name)
    return snapshot.memo("summary", lambda: _detail(snapshot))


def _detail(snapshot: data.Snapshot) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for condition in snapshot.conditions:
        counts[condition] = counts.get(condition, 0) + 1
    return {
        **data.experiment_summary(snapshot.record, snapshot.now),
        "trials": len(snapshot.trials),
        "running": counts.get("Running", 0),
        "counts": counts,
        "parameters": [
            {"name": p.name, "type": p.type, "log": p.log, "choices": list(p.choices)}
            for p in snapshot.parameters
        ],
        "metrics": list(snapshot.metric_names),
    }


@router.get("/experiments/{name}/yaml", summary="The Experiment document (spec) as YAML")
def get_yaml(name: str, ctx: Ctx) -> PlainTextResponse:
    snapshot = ctx.cache.get(name)
    text = snapshot.memo(
        "yaml",
        lambda: yaml.safe_dump(dict(snapshot.record.spec), sort_keys=False, allow_unicode=True),
    )
    return PlainTextResponse(text, media_type="application/yaml")


@router.get("/experiments/{name}/trials", summary="A page of the trial table")
def get_trials(
    name: str,
    ctx: Ctx,
    sort: Annotated[str, Query(description="a column, e.g. number, metrics.loss")] = "number",
    order: Literal["asc", "desc"] = "asc",
    condition: Annotated[str | None, Query(description="comma-separated conditions")] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 50,
) -> dict[str, Any]:
    return data.trials_table(
        ctx.cache.get(name),
        sort=sort,
        descending=order == "desc",
        condition=condition,
        search=search,
        offset=offset,
        limit=limit,
    )


@router.get("/experiments/{name}/data/{kind}", summary="The data behind a plot")
def get_data(
    name: str,
    kind: PlotKind,
    ctx: Ctx,
    x: PlotX = None,
    y: PlotY = None,
) -> Any:
    return _series(ctx, name, kind, x, y)


@router.get(
    "/experiments/{name}/plots/{kind}",
    summary="A plot as a plotly figure (JSON: data and layout)",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def get_plot(
    name: str,
    kind: PlotKind,
    ctx: Ctx,
    x: PlotX = None,
    y: PlotY = None,
) -> Response:
    return Response(figure_json(ctx, name, kind, x, y), media_type="application/json")


def figure_json(ctx: Context, name: str, kind: str, x: str | None, y: str | None) -> bytes:
    """The figure as JSON, serialised once per snapshot (figures are large: 10,000 points)."""
    snapshot = ctx.cache.get(name)
    return snapshot.memo(
        ("json", kind, x, y),
        lambda: json.dumps(_FIGURES[kind](_series(ctx, name, kind, x, y))).encode(),
    )


def warm_up(ctx: Context, kinds: tuple[str, ...] = PLOT_KINDS) -> None:
    """Import the numeric libraries and compute every plot of the latest experiments, so the
    first page load finds them ready: the latest experiment's first screen first (a page
    opened meanwhile waits for those), then SciPy, then the rest. scikit-learn is imported
    here only when the forest is fitted in-process (no worker). Runs in a background thread;
    failures only log."""
    try:
        if ctx.fit is data.forest_importances:
            import sklearn.ensemble  # noqa: F401

        latest = ctx.cache.experiments()[-WARM_EXPERIMENTS:][::-1]
        for kind in [k for k in FIRST_SCREEN if k in kinds] if latest else []:
            with contextlib.suppress(DataError):
                figure_json(ctx, latest[0].name, kind, None, None)
        import scipy.interpolate  # noqa: F401

        for record in latest:
            for kind in kinds:
                with contextlib.suppress(DataError):
                    figure_json(ctx, record.name, kind, None, None)
    except Exception:  # a background nicety: the requests themselves report errors
        logger.warning("dashboard warm-up failed", exc_info=True)


@router.get("/trials/{name}", summary="One trial: parameters, metrics, condition, times")
def get_trial(name: str, ctx: Ctx) -> dict[str, Any]:
    store = ctx.cache.store
    trial = store.get_trial(name)
    detail = data.trial_detail(store, trial)
    detail["hasLog"] = bool(trial.runner_handle.get("log"))
    return detail


@router.get("/trials/{name}/observations", summary="A trial's observation log")
def get_observations(
    name: str,
    ctx: Ctx,
    metric: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100000)] = 10000,
) -> dict[str, Any]:
    store = ctx.cache.store
    store.get_trial(name)  # NotFoundError for an unknown trial
    found = store.get_observations(name, metric or None)
    return {
        "total": len(found),
        "offset": offset,
        "observations": [
            {
                "metric": o.metric_name,
                "value": o.value,
                "numeric": o.numeric,
                "step": o.step,
                "time": o.time.isoformat(),
            }
            for o in found[offset : offset + limit]
        ],
    }


@router.get("/trials/{name}/log", summary="A trial's output from a byte offset")
def get_log(
    name: str,
    ctx: Ctx,
    offset: Annotated[int | None, Query(ge=0, description="absent: the end of the log")] = None,
) -> dict[str, Any]:
    """Up to 256 KiB of the trial's output from ``offset`` (without it: the last 64 KiB);
    ``next`` is the offset to ask for next, ``done`` whether the trial has ended."""
    store = ctx.cache.store
    trial = store.get_trial(name)
    done = trial.condition.is_terminal
    path = trial.runner_handle.get("log")
    empty = {"text": "", "offset": 0, "next": 0, "size": 0, "done": done, "available": False}
    if not path:
        return empty
    real = log_file(str(path), ctx.backend.logs_dir)
    try:
        with open(real, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            start = max(0, size - LOG_TAIL) if offset is None else min(offset, size)
            handle.seek(start)
            chunk = handle.read(LOG_CHUNK)
    except FileNotFoundError:
        return empty
    return {
        "text": chunk.decode("utf-8", "replace"),
        "offset": start,
        "next": start + len(chunk),
        "size": size,
        "done": done,
        "available": True,
    }


# -- actions ----------------------------------------------------------------------------------


def actions_allowed(request: Request, ctx: Ctx) -> Context:
    if not ctx.allow_actions:
        raise HTTPException(
            403, "actions are disabled: start the dashboard with --allow-actions to enable them"
        )
    if request.headers.get(ACTION_HEADER) != "1":
        raise HTTPException(403, f"an action needs the header {ACTION_HEADER}: 1")
    return ctx


Act = Annotated[Context, Depends(actions_allowed)]


@router.post("/experiments/{name}/stop", summary="Stop the experiment's background driver")
def stop_experiment(name: str, ctx: Act) -> dict[str, Any]:
    backend = ctx.backend
    backend.record(name)
    if backend.driver_pid(name) is None:
        raise HTTPException(
            409,
            f"experiment {name} has no background driver running from {backend.workdir}; "
            "a `tunery run` in a terminal stops with Ctrl-C",
        )
    backend.stop_driver(name)
    ctx.cache.forget(name)
    return {"stopped": name}


@router.post("/experiments/{name}/budget", summary="Raise maxTrialCount")
def raise_budget(
    name: str,
    ctx: Act,
    max_trial_count: Annotated[int, Body(alias="maxTrialCount", embed=True, ge=1)],
) -> dict[str, Any]:
    backend = ctx.backend
    record = backend.record(name)
    current = record.spec["spec"].get("maxTrialCount")
    if current is not None and max_trial_count <= current:
        raise HTTPException(
            400, f"maxTrialCount: {max_trial_count} is not above the current {current}"
        )
    was_completed = data.experiment_summary(record)["completed"]
    document = backend.edit_budget(name, {"maxTrialCount": max_trial_count})
    # A finished experiment the raise reopens needs a driver; a running one has its own
    # (a background driver, or the `tunery run` in a terminal): starting a second is wrong.
    if was_completed and not backend.driver_pid(name) and not is_completed(document):
        backend.start_driver(name)
    ctx.cache.forget(name)
    return {"name": name, "maxTrialCount": max_trial_count}


@router.delete("/experiments/{name}", summary="Delete the experiment, its trials and files")
def delete_experiment(name: str, ctx: Act) -> dict[str, Any]:
    ctx.backend.delete_experiment(name)
    ctx.cache.forget(name)
    return {"deleted": name}
