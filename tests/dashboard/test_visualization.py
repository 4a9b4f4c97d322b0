"""tunery.visualization: plotly figures from the same data as the dashboard."""

from __future__ import annotations

import datetime as dt

import plotly.graph_objects as go
import pytest

from tests.dashboard.conftest import NAME, Run
from tunery import visualization
from tunery.store import Store
from tunery.store.base import TrialRecord
from tunery.trials import TrialCondition
from tunery.visualization import DataError, data, figures

PLOTS = [
    visualization.plot_optimization_history,
    visualization.plot_parallel_coordinate,
    visualization.plot_param_importances,
    visualization.plot_intermediate_values,
    visualization.plot_slice,
    visualization.plot_contour,
    visualization.plot_rank,
    visualization.plot_edf,
    visualization.plot_timeline,
]


@pytest.mark.parametrize("plot", PLOTS, ids=[p.__name__ for p in PLOTS])
def test_every_plot_reads_the_store_by_url(plot: object, finished_run: Run) -> None:
    figure = plot(NAME, db=finished_run.db_url)  # type: ignore[operator]
    assert isinstance(figure, go.Figure)
    assert figure.data, "no trace"
    assert figure.to_html(include_plotlyjs=False, full_html=False)  # renders (as Jupyter does)


def test_figures_are_the_dashboard_figures(run_store: Store) -> None:
    snapshot = data.load_snapshot(run_store, NAME)
    figure = visualization.plot_optimization_history(snapshot, store=run_store)
    spec = figures.history_figure(data.optimization_history(snapshot))
    assert list(figure.data[0].y) == spec["data"][0]["y"]
    assert list(figure.data[1].y) == spec["data"][1]["y"]


def test_unknown_contour_parameter_names_the_known_ones(run_store: Store) -> None:
    with pytest.raises(
        DataError, match=r"unknown parameter 'momentum' \(parameters: lr, dropout\)"
    ):
        visualization.plot_contour(NAME, "momentum", "lr", store=run_store)


def test_an_experiment_without_values_gives_empty_figures(run_store: Store) -> None:
    record = run_store.get_experiment(NAME)
    now = dt.datetime.now(dt.UTC)
    trial = TrialRecord(
        "fresh-0", NAME, {"lr": "0.1", "dropout": "0.2"}, TrialCondition.RUNNING, start_time=now
    )
    snapshot = data.Snapshot(record, [trial])
    assert data.optimization_history(snapshot)["value"] == []
    assert data.importance(snapshot)["importances"] == []
    history = figures.history_figure(data.optimization_history(snapshot))
    assert history["data"] == [] and "no trial" in history["layout"]["annotations"][0]["text"]
    timeline = data.timeline(snapshot)
    assert timeline["running"] == [True]


def test_parallel_coordinates_keep_the_best_half_beyond_the_limit(run_store: Store) -> None:
    snapshot = data.load_snapshot(run_store, NAME)
    full = data.parallel_coordinates(snapshot, None)
    capped = data.parallel_coordinates(snapshot, 4)
    assert len(capped["value"]) == 4 and capped["trials"] == len(full["value"])
    top2 = sorted(full["value"], reverse=True)[:2]  # maximize
    assert set(top2) <= set(capped["value"])


def test_intermediate_sample_keeps_running_best_and_stopped_trials(run_store: Store) -> None:
    snapshot = data.load_snapshot(run_store, NAME)
    chosen = data.intermediate_sample(snapshot, limit=4)
    assert len(chosen) == 4
    best = max(range(len(snapshot.values)), key=lambda i: snapshot.values[i])
    assert best in chosen
    assert any(snapshot.conditions[i] == "EarlyStopped" for i in chosen)


def test_rank_colours_the_best_trial_zero_and_the_worst_one(run_store: Store) -> None:
    snapshot = data.load_snapshot(run_store, NAME)
    ranked = data.ranks(snapshot)
    values, rank = ranked["value"], ranked["rank"]
    assert len(rank) == len(values) >= 2
    best = values.index(max(values))  # accuracy is maximised
    worst = values.index(min(values))
    assert rank[best] == 0.0 and rank[worst] == 1.0
    assert all(0.0 <= r <= 1.0 for r in rank)
    spec = figures.rank_figure(ranked)
    (trace,) = spec["data"]
    assert trace["type"] == "scatter"  # two parameters: one against the other
    lr = next(p for p in ranked["parameters"] if p["name"] == "lr")
    assert trace["x"] == lr["values"] and spec["layout"]["xaxis"]["type"] == "log"
    assert trace["marker"]["color"] == rank
    third = {**lr, "name": "lr2"}
    matrix = figures.rank_figure({**ranked, "parameters": [*ranked["parameters"], third]})
    (trace,) = matrix["data"]
    assert trace["type"] == "splom"  # three: a scatter matrix of the pairs
    assert [d["label"] for d in trace["dimensions"]] == ["lr", "dropout", "lr2"]
    assert trace["dimensions"][0]["axis"]["type"] == "log"


def test_rank_with_one_parameter_plots_the_objective() -> None:
    ranked = {
        "objective": "loss",
        "number": [0, 1, 2],
        "value": [0.3, 0.1, 0.2],
        "rank": [1.0, 0.0, 0.5],
        "parameters": [
            {"name": "x", "type": "double", "log": False, "choices": [], "values": [1, 2, 3]}
        ],
    }
    (trace,) = figures.rank_figure(ranked)["data"]
    assert trace["type"] == "scatter" and trace["y"] == [0.3, 0.1, 0.2]
    assert trace["marker"]["color"] == [1.0, 0.0, 0.5]


def _history_data(best: list[float | None]) -> dict[str, object]:
    n = len(best)
    return {
        "objective": "loss",
        "type": "minimize",
        "goal": None,
        "number": list(range(n)),
        "trial": [f"t-{i}" for i in range(n)],
        "condition": ["Succeeded"] * n,
        "value": [b if b is not None else 1.0 for b in best],
        "best": best,
    }


def _step_value(xs: list[int], ys: list[float | None], x: int) -> float | None:
    """What a ``shape: "hv"`` line through (xs, ys) shows at ``x``: the last point's y."""
    at = max(k for k, v in enumerate(xs) if v <= x)
    return ys[at]


@pytest.mark.parametrize(
    "best",
    [
        [None, None, 5.0, 5.0, 3.0, 3.0, 3.0, 1.0, 1.0],
        [2.0, 2.0, 2.0],
        [4.0],
        [None, 3.0, None, 2.0, 2.0],
    ],
)
def test_the_best_so_far_line_keeps_its_steps_and_draws_the_same_line(
    best: list[float | None],
) -> None:
    line = figures.history_figure(_history_data(best))["data"][1]
    assert line["line"]["shape"] == "hv"
    assert line["x"][0] == 0 and line["x"][-1] == len(best) - 1
    for x, expected in enumerate(best):
        assert _step_value(line["x"], line["y"], x) == expected


def test_a_big_history_draws_every_trial_as_webgl_and_few_line_points() -> None:
    n = figures.GL_POINTS + 1
    best = [1.0 / (1 + i // 1000) for i in range(n)]
    markers, line = figures.history_figure(_history_data(best))["data"]
    assert markers["type"] == "scattergl" and len(markers["x"]) == n  # every trial, none dropped
    assert line["x"] == [0, 1000, 2000, 3000]  # the first, each new best, the last
    small = figures.history_figure(_history_data(best[:10]))["data"][0]
    assert small["type"] == "scatter"


def test_intermediate_values_draw_one_line_trace_per_condition_with_gaps_between_curves() -> None:
    curves = [
        {"trial": "a", "condition": "Succeeded", "values": [3.0, 2.0, 1.0]},
        {"trial": "b", "condition": "EarlyStopped", "values": [4.0, None, 3.5]},
        {"trial": "c", "condition": "Succeeded", "values": [2.5, 1.5]},
        {"trial": "d", "condition": "EarlyStopped", "values": [5.0]},
    ]
    spec = {"objective": "loss", "curves": curves, "shown": 4, "trials": 9, "threshold": None}
    traces = figures.intermediate_figure(spec)["data"]
    lines = {t["name"]: t for t in traces if t["mode"] == "lines"}
    assert set(lines) == {"Succeeded", "EarlyStopped"}
    done = lines["Succeeded"]
    assert done["x"] == [1, 2, 3, None, 1, 2, None]
    assert done["y"] == [3.0, 2.0, 1.0, None, 2.5, 1.5, None]
    assert done["text"][:3] == ["a (Succeeded)"] * 3 and done["text"][4] == "c (Succeeded)"
    assert lines["EarlyStopped"]["line"]["dash"] == "dot"
    (stops,) = [t for t in traces if t["mode"] == "markers"]
    assert stops["marker"]["symbol"] == "x"
    assert list(zip(stops["text"], stops["x"], stops["y"], strict=True)) == [
        ("b", 3, 3.5),
        ("d", 1, 5.0),
    ]
