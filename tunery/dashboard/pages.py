"""The dashboard's HTML pages: the experiments list, an experiment, a trial.

Server-rendered skeletons (names escaped) that load ``/static/dashboard.js``, which fills them
from the JSON API only and keeps them live by polling; plots are drawn by tunery's partial
plotly.js bundle (:mod:`tunery.dashboard.assets`, at a content-hashed URL), never a CDN. The
trial page asks for plotly.js at once (``preload``); the experiment page draws its first
screen's plots with ``/static/preview.js`` and only prefetches plotly.js, which
``dashboard.js`` runs when a plot is first pointed at or needs it. Registered by
:func:`tunery.dashboard.app.create_app`.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from controller.reconcile import objective_from_spec
from tunery.dashboard.api import context
from tunery.dashboard.assets import plotly_url
from tunery.store.errors import NotFoundError

router = APIRouter(include_in_schema=False)

PLOTS = (
    ("history", "Optimization history"),
    ("intermediate", "Intermediate values"),
    ("importance", "Parameter importance"),
    ("edf", "EDF"),
    ("parallel", "Parallel coordinates"),
    ("slice", "Slice"),
    ("contour", "Contour"),
    ("rank", "Rank"),
    ("timeline", "Timeline"),
)


def _page(title: str, page: str, crumbs: str, body: str, **attrs: str) -> HTMLResponse:
    data = "".join(f' data-{k}="{escape(v)}"' for k, v in attrs.items())
    plotly = ""
    if page == "trial":  # its one plot needs plotly.js at once
        plotly = f'<link id="plotly-js" rel="preload" href="{plotly_url()}" as="script">'
    if page == "experiment":  # previews draw the first screen; plotly.js runs on demand
        plotly = (
            f'<link id="plotly-js" rel="prefetch" href="{plotly_url()}" as="script">'
            '\n<script defer src="/static/preview.js"></script>'
        )

    return HTMLResponse(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · tunery</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/dashboard.css">
{plotly}
<script defer src="/static/dashboard.js"></script>
</head><body data-page="{page}"{data}>
<header><a class="brand" href="/">tunery</a> <span class="crumbs">{crumbs}</span>
<span id="live" class="live" title="updates while experiments run"></span></header>
<main>{body}</main>
</body></html>"""
    )


@router.get("/", response_class=HTMLResponse)
def experiments_page() -> HTMLResponse:
    body = """
<section class="toolbar">
  <input id="search" type="search" placeholder="search name, algorithm, objective">
  <select id="status-filter"><option value="">every status</option>
    <option>Created</option><option>Running</option><option>Restarting</option>
    <option>Succeeded</option><option>Failed</option></select>
  <span id="count" class="muted"></span>
</section>
<table id="experiments" class="grid">
<thead><tr><th data-sort="name">name</th><th data-sort="condition">status</th>
<th data-sort="algorithm">algorithm</th><th data-sort="trials">trials (N/M)</th>
<th data-sort="bestValue">best</th><th data-sort="start">start</th>
<th data-sort="durationSeconds">duration</th></tr></thead><tbody></tbody></table>
<p id="empty" class="muted" hidden>no experiments in this store yet</p>"""
    return _page("experiments", "experiments", "experiments", body)


@router.get("/experiments/{name}", response_class=HTMLResponse)
def experiment_page(name: str, request: Request) -> HTMLResponse:
    try:  # the record only: the trials are read by the API calls the page makes meanwhile
        record = context(request).cache.store.get_experiment(name)
    except NotFoundError:
        return _not_found("experiment", name)
    shown = PLOTS
    # the Pareto front first for a multi-objective experiment
    if objective_from_spec(record.spec.get("spec", {})).is_multi:
        shown = (("pareto", "Pareto front"), *PLOTS)
    selectors = (
        '<figcaption>contour axes: <select id="contour-x"></select> vs '
        '<select id="contour-y"></select></figcaption>'
    )
    plots = "\n".join(
        f'<figure class="plot" id="plot-{kind}" data-kind="{kind}" aria-label="{label}">'
        f'{selectors if kind == "contour" else ""}<div class="chart"></div></figure>'
        for kind, label in shown
    )
    crumbs = f'<a href="/">experiments</a> / {escape(name)}'
    body = f"""
<section id="summary" class="summary"></section>
<section id="actions" class="actions" hidden>
  <button id="stop">stop</button>
  <label>maxTrialCount <input id="budget" type="number" min="1"></label>
  <button id="raise">raise budget</button>
  <button id="delete" class="danger">delete</button>
  <span id="action-result" class="muted"></span>
</section>
<section class="plots">{plots}</section>
<h2>Trials</h2>
<section class="toolbar">
  <input id="trial-search" type="search" placeholder="search name, parameters, reason">
  <select id="trial-condition"><option value="">every condition</option>
    <option>Created</option><option>Running</option><option>Succeeded</option>
    <option>EarlyStopped</option><option>Failed</option><option>MetricsUnavailable</option>
    <option>Killed</option></select>
  <button id="prev">&lsaquo; prev</button><span id="page-info" class="muted"></span>
  <button id="next">next &rsaquo;</button>
  <a id="csv" href="#">JSON of this page</a>
</section>
<div class="table-wrap">
<table id="trials" class="grid"><thead></thead><tbody></tbody></table></div>
<h2>Experiment YAML</h2>
<pre id="yaml" class="code"></pre>"""
    return _page(name, "experiment", crumbs, body, name=name, url=quote(name, safe=""))


@router.get("/trials/{name}", response_class=HTMLResponse)
def trial_page(name: str, request: Request) -> HTMLResponse:
    try:
        trial = context(request).cache.store.get_trial(name)
    except NotFoundError:
        return _not_found("trial", name)
    experiment = trial.experiment_name
    crumbs = (
        f'<a href="/">experiments</a> / <a href="/experiments/{quote(experiment, safe="")}">'
        f"{escape(experiment)}</a> / {escape(name)}"
    )
    body = """
<section id="trial-summary" class="summary"></section>
<div class="columns">
<section><h2>Parameters</h2><table id="parameters" class="grid"><tbody></tbody></table></section>
<section><h2>Metrics</h2><table id="metrics" class="grid"><thead><tr><th>metric</th>
<th>min</th><th>max</th><th>latest</th></tr></thead><tbody></tbody></table></section>
</div>
<h2>Observation log</h2>
<figure class="plot" id="plot-observations"><div class="chart"></div></figure>
<div class="table-wrap short"><table id="observations" class="grid"><thead><tr><th>time</th>
<th>metric</th><th>step</th><th>value</th></tr></thead><tbody></tbody></table></div>
<h2>Output <span id="log-state" class="muted"></span></h2>
<pre id="log" class="code log"></pre>"""
    return _page(name, "trial", crumbs, body, name=name, url=quote(name, safe=""))


def _not_found(kind: str, name: str) -> HTMLResponse:
    response = _page(
        f"no {kind} {name}",
        "missing",
        "not found",
        f"""<p>No {kind} named <code>{escape(name)}</code> in this store.
<a href="/">Back to the experiments</a>.</p>""",
    )
    response.status_code = 404
    return response
