"""The Pareto front of a multi-objective experiment (examples/multi-objective): the data layer,
``plot_pareto_front``, and the dashboard's plot and experiment page (the Pareto plot appears
only for multi-objective experiments)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import plotly.graph_objects as go
import pytest
from fastapi.testclient import TestClient

from tests.dashboard.conftest import NAME, ROOT, Run, make_client, run_experiment
from tunery import visualization
from tunery.pareto import dominates
from tunery.store import Store, open_store
from tunery.visualization import DataError, data

MO = "multi-objective"


@pytest.fixture(scope="module")
def mo_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("pareto-run")
    for path in (ROOT / "examples" / "multi-objective").iterdir():
        shutil.copy(path, folder / path.name)
    run_experiment(folder, "experiment.yaml")
    return Run(folder, f"sqlite:///{folder / 'tunery.db'}")


@pytest.fixture
def mo_store(mo_run: Run) -> Iterator[Store]:
    store = open_store(mo_run.db_url)
    yield store
    store.close()


def test_the_front_is_the_non_dominated_trials(mo_store: Store) -> None:
    series = data.pareto_front(data.load_snapshot(mo_store, MO))
    assert series["multi"] and (series["x"], series["y"]) == ("loss", "latency_ms")
    points = list(zip(series["xValue"], series["yValue"], strict=True))
    assert len(points) == 16
    for p, on_front in zip(points, series["front"], strict=True):
        assert on_front == (not any(dominates(q, p) for q in points))
    status = mo_store.get_experiment(MO).status
    assert status["paretoFrontSize"] == sum(series["front"])
    with pytest.raises(DataError, match=r"unknown objective 'accuracy'"):
        data.pareto_front(data.load_snapshot(mo_store, MO), "accuracy")


def test_plot_pareto_front(mo_run: Run) -> None:
    figure = visualization.plot_pareto_front(MO, db=mo_run.db_url)
    assert isinstance(figure, go.Figure)
    dominated, front = figure.data
    assert front.name == "Pareto front" and len(front.x) >= 1
    assert len(front.x) + len(dominated.x) == 16
    assert list(front.x) == sorted(front.x)
    assert figure.to_html(include_plotlyjs=False, full_html=False)


def test_dashboard_shows_the_pareto_plot_only_when_multi_objective(
    mo_store: Store, mo_run: Run
) -> None:
    client: TestClient = make_client(mo_store, mo_run)
    page = client.get(f"/experiments/{MO}").text
    assert 'id="plot-pareto"' in page
    figure = client.get(f"/api/experiments/{MO}/plots/pareto").json()
    assert [t["name"] for t in figure["data"]] == ["dominated", "Pareto front"]
    swapped = client.get(f"/api/experiments/{MO}/plots/pareto?x=latency_ms&y=loss").json()
    assert swapped["layout"]["xaxis"]["title"]["text"] == "latency_ms (minimize)"


def test_single_objective_page_has_no_pareto_plot(client: TestClient) -> None:
    assert 'id="plot-pareto"' not in client.get(f"/experiments/{NAME}").text
    figure = client.get(f"/api/experiments/{NAME}/plots/pareto").json()
    assert figure["data"] == []
    assert "single objective" in figure["layout"]["annotations"][0]["text"]
