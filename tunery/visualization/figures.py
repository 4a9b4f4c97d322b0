"""Plotly figure specifications (``{"data": [...], "layout": {...}}``) built from the data layer.

Plain JSON-ready dicts, so the dashboard's API sends them as they are and the browser draws
them with ``Plotly.react``, while :mod:`tunery.visualization` wraps the same dicts in
``plotly.graph_objects.Figure`` for Python and Jupyter. Large experiments use WebGL traces
(``scattergl``) where that is faster (:data:`GL_POINTS`), and parallel coordinates draw a
sample of at most :data:`~tunery.visualization.data.PARALLEL_TRIALS` lines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Figure = dict[str, Any]

CONDITION_COLORS: Mapping[str, str] = {
    "Succeeded": "#2e7d32",
    "EarlyStopped": "#ef6c00",
    "Failed": "#c62828",
    "MetricsUnavailable": "#6d4c41",
    "Killed": "#757575",
    "Running": "#1565c0",
    "Created": "#90a4ae",
}

COLORSCALE = "Viridis"

GL_POINTS = 3000
"""Above this many trials, slice, contour and timeline points are drawn with WebGL
(``scattergl``): faster than SVG for many points, slower for few (measured in headless
Chromium; the history's markers too: 10,000 took 0.27 s as WebGL, 0.48 s as SVG; EDF and
intermediate values stay SVG lines, which are faster for them)."""


def _gl(points: int) -> str:
    return "scattergl" if points > GL_POINTS else "scatter"


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
        "template": "plotly_white",
        "hovermode": "closest",
        **extra,
    }


def _empty(title: str, why: str) -> Figure:
    return {
        "data": [],
        "layout": _layout(
            title,
            xaxis={"visible": False},
            yaxis={"visible": False},
            annotations=[{"text": why, "showarrow": False, "font": {"size": 14}}],
        ),
    }


def _steps(best: Sequence[Any]) -> list[int]:
    """The points of a best-so-far step line (``shape: "hv"``) that draw the same line: the
    first, each change (a new best, or a gap's start or end), and the last."""
    last = len(best) - 1
    return [i for i, b in enumerate(best) if i in (0, last) or b != best[i - 1]]


def history_figure(data: Mapping[str, Any]) -> Figure:
    """Every trial's objective value (WebGL markers above :data:`GL_POINTS` trials) and the
    best value so far, a step line sent as its steps only (the same line, far fewer points)."""
    title = "Optimization history"
    if not data["value"]:
        return _empty(title, "no trial has an objective value yet")
    objective = data["objective"]
    steps = _steps(data["best"])
    traces: list[dict[str, Any]] = [
        {
            "type": _gl(len(data["number"])),
            "mode": "markers",
            "name": objective,
            "x": data["number"],
            "y": data["value"],
            "text": data["trial"],
            "marker": {
                "size": 6,
                "color": [CONDITION_COLORS.get(c, "#333") for c in data["condition"]],
            },
            "hovertemplate": "%{text}<br>trial %{x}<br>" + objective + " %{y}<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "best so far",
            "x": [data["number"][i] for i in steps],
            "y": [data["best"][i] for i in steps],
            "line": {"shape": "hv", "color": "#d81b60", "width": 2},
        },
    ]
    if data.get("goal") is not None:
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "goal",
                "x": [data["number"][0], data["number"][-1]],
                "y": [data["goal"], data["goal"]],
                "line": {"dash": "dot", "color": "#555"},
            }
        )
    return {
        "data": traces,
        "layout": _layout(
            title, xaxis={"title": {"text": "trial"}}, yaxis={"title": {"text": objective}}
        ),
    }


def pareto_figure(data: Mapping[str, Any]) -> Figure:
    """Two objectives against each other: dominated trials grey, the Pareto front as a
    coloured step line through its points (in the order of the x objective)."""
    title = f"Pareto front: {data['x']} vs {data['y']}"
    if not data["multi"]:
        return _empty("Pareto front", "the experiment has a single objective")
    if not data["trial"]:
        return _empty(title, "no trial has every objective value yet")
    front = [i for i, f in enumerate(data["front"]) if f]
    rest = [i for i, f in enumerate(data["front"]) if not f]
    kind = _gl(len(data["trial"]))
    hover = "%{text}<br>" + data["x"] + " %{x}<br>" + data["y"] + " %{y}<extra></extra>"

    def trace(rows: list[int], name: str, color: str, mode: str) -> dict[str, Any]:
        return {
            "type": kind,
            "mode": mode,
            "name": name,
            "x": [data["xValue"][i] for i in rows],
            "y": [data["yValue"][i] for i in rows],
            "text": [data["trial"][i] for i in rows],
            "marker": {"size": 7, "color": color},
            "hovertemplate": hover,
        }

    front.sort(key=lambda i: (data["xValue"][i], data["yValue"][i]))
    line = trace(front, "Pareto front", "#d81b60", "lines+markers")
    line["line"] = {"shape": "linear", "color": "#d81b60", "width": 1}
    types = {o["name"]: o["type"] for o in data["objectives"]}
    return {
        "data": [trace(rest, "dominated", "#b0bec5", "markers"), line],
        "layout": _layout(
            title,
            xaxis={"title": {"text": f"{data['x']} ({types[data['x']]})"}},
            yaxis={"title": {"text": f"{data['y']} ({types[data['y']]})"}},
        ),
    }


def edf_figure(data: Mapping[str, Any]) -> Figure:
    title = "Empirical distribution (EDF)"
    if not data["value"]:
        return _empty(title, "no trial has an objective value yet")
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": data["objective"],
                "x": data["value"],
                "y": data["fraction"],
                "line": {"shape": "hv"},
            }
        ],
        "layout": _layout(
            title,
            xaxis={"title": {"text": data["objective"]}},
            yaxis={"title": {"text": "fraction of trials ≤ value"}, "range": [0, 1.02]},
        ),
    }


def _dimension(p: Mapping[str, Any]) -> dict[str, Any]:
    """A parcoords axis; absent values stay ``None`` (JSON null), log axes in decades."""
    values = list(p["values"])
    dim: dict[str, Any] = {"label": p["name"], "values": values}
    if p["type"] == "categorical":
        dim.update(tickvals=list(range(len(p["choices"]))), ticktext=p["choices"])
    elif p["log"] and all(v > 0 for v in values if v is not None):
        logs = [None if v is None else math.log10(v) for v in values]
        finite = [v for v in logs if v is not None]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        ticks = list(range(math.floor(lo), math.ceil(hi) + 1))
        dim.update(
            values=logs,
            tickvals=ticks,
            ticktext=[f"1e{t}" for t in ticks],
            label=f"{p['name']} (log)",
        )
    return dim


def parallel_figure(data: Mapping[str, Any]) -> Figure:
    title = "Parallel coordinates"
    if not data["value"]:
        return _empty(title, "no trial has an objective value yet")
    dims = [_dimension(p) for p in data["parameters"]]
    dims.append({"label": data["objective"], "values": data["value"]})
    return {
        "data": [
            {
                "type": "parcoords",
                "dimensions": dims,
                "line": {
                    "color": data["value"],
                    "colorscale": COLORSCALE,
                    "showscale": True,
                    "colorbar": {"title": {"text": data["objective"]}},
                },
            }
        ],
        "layout": _layout(
            title
            if len(data["value"]) == data["trials"]
            else f"{title}<br><sup>"
            f"{len(data['value'])} of {data['trials']} trials: the best half and a sample</sup>",
            margin={"l": 70, "r": 70, "t": 110, "b": 30},
        ),
    }


def importance_figure(data: Mapping[str, Any]) -> Figure:
    title = "Parameter importance"
    if not data["importances"]:
        return _empty(title, "needs two trials with an objective value")
    ranked = list(reversed(data["importances"]))
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [r["importance"] for r in ranked],
                "y": [r["name"] for r in ranked],
                "text": [f"{r['importance']:.2f}" for r in ranked],
                "textposition": "outside",
                "marker": {"color": "#1565c0"},
            }
        ],
        "layout": _layout(
            f"{title}<br><sup>random forest, mean decrease in impurity, "
            f"{data['trials']} trials</sup>",
            xaxis={"title": {"text": f"importance for {data['objective']}"}},
        ),
    }


def slice_figure(data: Mapping[str, Any]) -> Figure:
    title = "Slice"
    params: Sequence[Mapping[str, Any]] = data["parameters"]
    if not data["value"] or not params:
        return _empty(title, "no trial has an objective value yet")
    columns = min(len(params), 3)
    rows = math.ceil(len(params) / columns)
    traces = []
    layout = _layout(
        title,
        grid={"rows": rows, "columns": columns, "pattern": "independent"},
        showlegend=False,
        height=max(360, 300 * rows),
    )
    for k, p in enumerate(params, start=1):
        suffix = "" if k == 1 else str(k)
        traces.append(
            {
                "type": _gl(len(data["number"])),
                "mode": "markers",
                "x": _labels(p),
                "y": data["value"],
                "xaxis": f"x{suffix}",
                "yaxis": f"y{suffix}",
                "marker": {
                    "size": 5,
                    "color": data["number"],
                    "colorscale": "Blues",
                    "showscale": k == 1,
                    "colorbar": {"title": {"text": "trial"}},
                },
                "name": p["name"],
                "hovertemplate": p["name"] + " %{x}<br>%{y}<extra></extra>",
            }
        )
        xaxis: dict[str, Any] = {"title": {"text": p["name"]}}
        if p["log"]:
            xaxis["type"] = "log"
        if p["type"] == "categorical":
            xaxis["type"] = "category"
        layout[f"xaxis{suffix}"] = xaxis
        layout[f"yaxis{suffix}"] = {
            "title": {"text": data["objective"] if k % columns == 1 or columns == 1 else ""}
        }
    return {"data": traces, "layout": layout}


RANK_PARAMETERS = 8
"""The rank plot's scatter matrix shows at most this many parameters (the spec's first)."""


def rank_figure(data: Mapping[str, Any]) -> Figure:
    """Trials coloured by the rank of their objective value (best 0, worst 1): the objective
    against the parameter when there is one, the two parameters against each other when there
    are two, else a scatter matrix over the parameter pairs."""
    title = "Rank"
    params: Sequence[Mapping[str, Any]] = data["parameters"][:RANK_PARAMETERS]
    if not data["value"] or not params:
        return _empty(title, "no trial has an objective value yet")
    marker = {
        "size": 5,
        "color": data["rank"],
        "cmin": 0,
        "cmax": 1,
        "colorscale": "RdYlBu",
        "reversescale": True,
        "showscale": True,
        "colorbar": {"title": {"text": "rank (0 best)"}},
    }
    text = [
        f"trial {n}: {v:.6g} (rank {r:.2f})"
        for n, v, r in zip(data["number"], data["value"], data["rank"], strict=True)
    ]
    if len(params) <= 2:  # one subplot (plotly's splom cannot draw a lone one half-hidden)
        x = params[0]
        y = params[1] if len(params) == 2 else None
        return {
            "data": [
                {
                    "type": _gl(len(data["number"])),
                    "mode": "markers",
                    "x": _labels(x),
                    "y": data["value"] if y is None else _labels(y),
                    "text": text,
                    "marker": marker,
                    "hovertemplate": "%{text}<extra></extra>",
                }
            ],
            "layout": _layout(
                title,
                xaxis=_param_axis(x),
                yaxis={"title": {"text": data["objective"]}} if y is None else _param_axis(y),
            ),
        }
    dimensions = []
    for p in params:
        kind = "category" if p["type"] == "categorical" else "log" if p["log"] else "linear"
        values = _labels(p) if kind == "category" else p["values"]
        dimensions.append({"label": p["name"], "values": values, "axis": {"type": kind}})
    side = max(420, 170 * len(params))
    return {
        "data": [
            {
                "type": "splom",
                "dimensions": dimensions,
                "text": text,
                "marker": marker,
                "diagonal": {"visible": False},
                "showupperhalf": False,
                "hovertemplate": "%{text}<extra></extra>",
            }
        ],
        "layout": _layout(title, height=side, dragmode="select"),
    }


def _param_axis(p: Mapping[str, Any]) -> dict[str, Any]:
    axis: dict[str, Any] = {"title": {"text": p["name"]}}
    if p["type"] == "categorical":
        axis["type"] = "category"
    elif p["log"]:
        axis["type"] = "log"
    return axis


def _labels(p: Mapping[str, Any]) -> list[Any]:
    """A parameter's values for an axis: categorical ones by their choice's name."""
    return [p["choices"][int(v)] if p["choices"] and v is not None else v for v in p["values"]]


def contour_figure(data: Mapping[str, Any]) -> Figure:
    x, y = data["x"], data["y"]
    title = f"Contour: {x['name']} vs {y['name']}"
    points = data["points"]
    if not points["value"]:
        return _empty(title, "no trial has an objective value yet")
    traces: list[dict[str, Any]] = []
    if data["grid"] is not None:
        traces.append(
            {
                "type": "contour",
                "x": data["grid"]["x"],
                "y": data["grid"]["y"],
                "z": data["grid"]["value"],
                "colorscale": COLORSCALE,
                "connectgaps": False,
                "contours": {"coloring": "heatmap"},
                "colorbar": {"title": {"text": data["objective"]}},
                "hoverinfo": "skip",
            }
        )
    traces.append(
        {
            "type": _gl(len(points["number"])),
            "mode": "markers",
            "x": points["x"],
            "y": points["y"],
            "text": [
                f"trial {n}: {v:.6g}"
                for n, v in zip(points["number"], points["value"], strict=True)
            ],
            "marker": {"size": 5, "color": "#000", "opacity": 0.6},
            "hovertemplate": "%{text}<extra></extra>",
            "name": "trials",
        }
    )

    def axis(a: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"title": {"text": a["name"]}}
        if a["log"]:
            out["type"] = "log"
        if a["type"] == "categorical":
            out.update(tickvals=list(range(len(a["choices"]))), ticktext=a["choices"])
        return out

    return {
        "data": traces,
        "layout": _layout(title, xaxis=axis(x), yaxis=axis(y), showlegend=False),
    }


def timeline_figure(data: Mapping[str, Any]) -> Figure:
    title = "Timeline"
    if not data["number"]:
        return _empty(title, "no trial has started yet")
    by_condition: dict[str, dict[str, list[Any]]] = {}
    for n, trial, cond, start, end, gpus in zip(
        data["number"],
        data["trial"],
        data["condition"],
        data["start"],
        data["end"],
        data["gpus"],
        strict=True,
    ):
        series = by_condition.setdefault(cond, {"x": [], "y": [], "text": []})
        where = f"GPU {','.join(gpus)}" if gpus else "no GPU"
        label = f"{trial} ({cond}, {where})"
        series["x"] += [start, end, None]
        series["y"] += [n, n, None]
        series["text"] += [label, label, None]
    traces = [
        {
            "type": _gl(len(data["number"])),
            "mode": "lines+markers",
            "name": cond,
            "x": s["x"],
            "y": s["y"],
            "text": s["text"],
            "line": {"color": CONDITION_COLORS.get(cond, "#333"), "width": 5},
            "marker": {"size": 3, "color": CONDITION_COLORS.get(cond, "#333")},
            "hovertemplate": "%{text}<br>%{x}<extra></extra>",
        }
        for cond, s in sorted(by_condition.items())
    ]
    return {
        "data": traces,
        "layout": _layout(
            title,
            xaxis={"title": {"text": "time (UTC)"}, "type": "date"},
            yaxis={"title": {"text": "trial"}},
        ),
    }


def intermediate_figure(data: Mapping[str, Any]) -> Figure:
    """The sampled trials' reported values per step: one line trace per condition (its
    curves joined, broken by gaps; hover names the trial), early stops marked with an x, and
    the median-stop threshold. Few traces draw far faster than one per curve (0.1 s against
    0.3 s for 60 curves in headless Chromium)."""
    title = "Intermediate values"
    if not data["curves"]:
        return _empty(title, "no trial has reported yet")
    lines: dict[str, dict[str, Any]] = {}
    stops: dict[str, list[Any]] = {"x": [], "y": [], "text": []}
    objective = data["objective"]
    for curve in data["curves"]:
        values = curve["values"]
        if not values:
            continue
        condition = curve["condition"]
        stopped = condition == "EarlyStopped"
        line = lines.setdefault(
            condition,
            {
                "type": "scatter",
                "mode": "lines",
                "name": condition,
                "legendgroup": condition,
                "x": [],
                "y": [],
                "text": [],
                "line": {
                    "color": CONDITION_COLORS.get(condition, "#333"),
                    "width": 1.5,
                    "dash": "dot" if stopped else "solid",
                },
                "opacity": 0.8,
                "hovertemplate": "%{text}<br>step %{x}<br>" + objective + " %{y}<extra></extra>",
            },
        )
        line["x"] += [*range(1, len(values) + 1), None]  # None: a gap before the next curve
        line["y"] += [*values, None]
        line["text"] += [f"{curve['trial']} ({condition})"] * len(values) + [None]
        if stopped:
            last = max((k for k, v in enumerate(values) if v is not None), default=None)
            if last is not None:
                stops["x"].append(last + 1)
                stops["y"].append(values[last])
                stops["text"].append(curve["trial"])
    traces: list[dict[str, Any]] = [lines[c] for c in sorted(lines)]
    if stops["x"]:
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "early stopped",
                "legendgroup": "EarlyStopped",
                "showlegend": False,
                **stops,
                "marker": {"symbol": "x", "size": 10, "color": CONDITION_COLORS["EarlyStopped"]},
                "hovertemplate": "%{text} stopped at step %{x}<extra></extra>",
            }
        )
    threshold = data.get("threshold")
    if threshold and any(v is not None for v in threshold["value"]):
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"median-stop threshold ({threshold['usedTrials']} completed trials)",
                "x": threshold["step"],
                "y": threshold["value"],
                "line": {"color": "#000", "width": 3, "dash": "dash"},
            }
        )
    note = f"{data['shown']} of {data['trials']} trials shown"
    return {
        "data": traces,
        "layout": _layout(
            f"{title}<br><sup>{note}</sup>",
            xaxis={"title": {"text": "step (report number)"}},
            yaxis={"title": {"text": data["objective"]}},
        ),
    }
