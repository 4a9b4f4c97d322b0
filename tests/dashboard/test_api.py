"""The JSON API against a store filled by a real ``tunery run`` (random + medianstop)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.dashboard.conftest import NAME, Run, make_client
from tunery.store import Store, open_store
from tunery.store.base import TrialRecord
from tunery.visualization import data

KINDS = (
    "history",
    "intermediate",
    "parallel",
    "importance",
    "slice",
    "contour",
    "rank",
    "edf",
    "timeline",
)


def accuracies(store: Store) -> dict[str, float]:
    snapshot = data.load_snapshot(store, NAME)
    return {
        t.name: v
        for t, v in zip(snapshot.trials, snapshot.values, strict=True)
        if not math.isnan(v)
    }


def test_experiments_list_summarises_the_run(client: TestClient, run_store: Store) -> None:
    [row] = client.get("/api/experiments").json()
    assert row["name"] == NAME
    assert row["condition"] == "Succeeded"
    assert (row["trials"], row["maxTrials"], row["finishedTrials"]) == (10, 10, 10)
    assert row["algorithm"] == "random" and row["earlyStopping"] == "medianstop"
    best = max(accuracies(run_store).values())
    assert row["bestValue"] == pytest.approx(best)
    assert row["durationSeconds"] > 0 and row["start"] and row["completion"]


def test_experiment_detail_counts_every_condition(client: TestClient) -> None:
    detail = client.get(f"/api/experiments/{NAME}").json()
    assert sum(detail["counts"].values()) == 10
    assert detail["counts"].get("EarlyStopped", 0) > 0, "medianstop stopped nobody"
    assert [p["name"] for p in detail["parameters"]] == ["lr", "dropout"]
    assert detail["parameters"][0]["log"] is True
    assert detail["metrics"] == ["accuracy"]


def test_trial_table_sorts_numbers_as_numbers(client: TestClient) -> None:
    page = client.get(
        f"/api/experiments/{NAME}/trials", params={"sort": "metrics.accuracy", "order": "desc"}
    ).json()
    values = [r["metrics.accuracy"] for r in page["rows"]]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True)
    assert values[len(present) :] == [None] * (len(values) - len(present))  # absent last
    lrs = [
        float(r["params.lr"])
        for r in client.get(
            f"/api/experiments/{NAME}/trials", params={"sort": "params.lr"}
        ).json()["rows"]
    ]
    assert lrs == sorted(lrs)


def test_trial_table_filters_and_pages(client: TestClient) -> None:
    detail = client.get(f"/api/experiments/{NAME}").json()
    stopped = client.get(
        f"/api/experiments/{NAME}/trials", params={"condition": "EarlyStopped"}
    ).json()
    assert stopped["matched"] == detail["counts"]["EarlyStopped"]
    assert {r["condition"] for r in stopped["rows"]} == {"EarlyStopped"}
    assert all(r["message"] for r in stopped["rows"])  # the stopper's reason is shown
    first = stopped["rows"][0]["name"]
    found = client.get(f"/api/experiments/{NAME}/trials", params={"search": first}).json()
    assert [r["name"] for r in found["rows"]] == [first]
    page = client.get(f"/api/experiments/{NAME}/trials", params={"offset": 8, "limit": 5}).json()
    assert [r["number"] for r in page["rows"]] == [8, 9]
    assert page["total"] == 10 and page["matched"] == 10


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"sort": "params.nope"}, ["unknown parameter 'nope'", "lr"]),
        ({"sort": "x; DROP TABLE trials"}, ["unknown sort column"]),
        ({"condition": "Sleeping"}, ["unknown condition 'Sleeping'"]),
    ],
)
def test_bad_table_requests_name_what_is_wrong(
    client: TestClient, params: dict[str, str], words: list[str]
) -> None:
    response = client.get(f"/api/experiments/{NAME}/trials", params=params)
    assert response.status_code == 400
    for word in words:
        assert word in response.json()["detail"]


def test_limits_are_validated(client: TestClient) -> None:
    response = client.get(f"/api/experiments/{NAME}/trials", params={"limit": 0})
    assert response.status_code == 422
    assert "limit" in str(response.json()["detail"])


def test_unknown_names_are_404(client: TestClient) -> None:
    assert client.get("/api/experiments/nope").status_code == 404
    assert client.get("/api/experiments/nope/plots/history").status_code == 404
    assert client.get("/api/trials/nope").status_code == 404
    assert client.get("/experiments/nope").status_code == 404
    assert client.get(f"/api/experiments/{NAME}/plots/nope").status_code == 422


@pytest.mark.parametrize("kind", KINDS)
def test_every_plot_is_a_figure_with_traces(client: TestClient, kind: str) -> None:
    figure = client.get(f"/api/experiments/{NAME}/plots/{kind}").json()
    assert figure["data"], f"{kind} has no trace"
    assert figure["layout"]["title"]["text"]


def test_history_data_is_the_visualization_data(client: TestClient, run_store: Store) -> None:
    served = client.get(f"/api/experiments/{NAME}/data/history").json()
    assert served == data.optimization_history(data.load_snapshot(run_store, NAME))
    best = served["best"]
    assert best == [max(served["value"][: i + 1]) for i in range(len(best))]  # maximize


def test_intermediate_values_mark_stops_and_draw_the_threshold(client: TestClient) -> None:
    served = client.get(f"/api/experiments/{NAME}/data/intermediate").json()
    assert served["shown"] == 10
    stopped = [c for c in served["curves"] if c["condition"] == "EarlyStopped"]
    finished = [c for c in served["curves"] if c["condition"] == "Succeeded"]
    assert stopped and finished
    assert max(len(c["values"]) for c in stopped) < 10 == max(len(c["values"]) for c in finished)
    threshold = served["threshold"]
    assert threshold["settings"] == {"min_trials_required": "2", "start_step": "3"}
    assert threshold["value"][:2] == [None, None]  # nothing decided before start_step
    assert all(v is not None for v in threshold["value"][2:])
    figure = client.get(f"/api/experiments/{NAME}/plots/intermediate").json()
    names = [t.get("name", "") for t in figure["data"]]
    assert any(n.startswith("median-stop threshold") for n in names)
    assert any(t.get("marker", {}).get("symbol") == "x" for t in figure["data"])


def test_importance_is_a_distribution_over_the_parameters(client: TestClient) -> None:
    served = client.get(f"/api/experiments/{NAME}/data/importance").json()
    assert {r["name"] for r in served["importances"]} == {"lr", "dropout"}
    assert sum(r["importance"] for r in served["importances"]) == pytest.approx(1.0)
    assert "RandomForestRegressor" in served["method"]


def test_contour_axes_can_be_chosen_and_are_checked(client: TestClient) -> None:
    served = client.get(
        f"/api/experiments/{NAME}/data/contour", params={"x": "dropout", "y": "lr"}
    ).json()
    assert (served["x"]["name"], served["y"]["name"]) == ("dropout", "lr")
    assert served["grid"] is not None and len(served["grid"]["value"]) == 60
    bad = client.get(f"/api/experiments/{NAME}/data/contour", params={"x": "momentum"})
    assert bad.status_code == 400 and "momentum" in bad.json()["detail"]


def test_timeline_has_every_trial(client: TestClient) -> None:
    served = client.get(f"/api/experiments/{NAME}/data/timeline").json()
    assert len(served["number"]) == 10
    assert all(s <= e for s, e in zip(served["start"], served["end"], strict=True))


def test_yaml_is_the_experiment_document(client: TestClient) -> None:
    response = client.get(f"/api/experiments/{NAME}/yaml")
    document = yaml.safe_load(response.text)
    assert document["kind"] == "Experiment" and document["metadata"]["name"] == NAME
    assert document["spec"]["earlyStopping"]["algorithmName"] == "medianstop"


def test_trial_detail_observations_and_log(client: TestClient) -> None:
    rows = client.get(f"/api/experiments/{NAME}/trials", params={"condition": "Succeeded"}).json()[
        "rows"
    ]
    name = rows[0]["name"]
    trial = client.get(f"/api/trials/{name}").json()
    assert trial["experiment"] == NAME and trial["condition"] == "Succeeded"
    assert set(trial["parameters"]) == {"lr", "dropout"}
    assert trial["metrics"][0]["name"] == "accuracy" and trial["done"]
    observations = client.get(f"/api/trials/{name}/observations").json()
    assert observations["total"] == 10
    assert [o["numeric"] for o in observations["observations"]][-1] == pytest.approx(
        float(trial["metrics"][0]["latest"])
    )
    log = client.get(f"/api/trials/{name}/log").json()
    assert log["available"] and log["done"] and log["offset"] == 0
    assert log["text"].count("accuracy=") == 10
    tail = client.get(f"/api/trials/{name}/log", params={"offset": log["size"] - 10}).json()
    assert tail["text"] == log["text"][-10:] and tail["next"] == log["size"]


def test_openapi_documents_the_api(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    for path in (
        "/api/experiments",
        "/api/experiments/{name}/trials",
        "/api/experiments/{name}/plots/{kind}",
        "/api/trials/{name}/log",
        "/api/experiments/{name}/budget",
    ):
        assert path in paths


def test_pages_are_served_without_a_cdn(client: TestClient) -> None:
    trial = client.get(f"/api/experiments/{NAME}/trials").json()["rows"][0]["name"]
    for url in ("/", f"/experiments/{NAME}", f"/trials/{trial}"):
        page = client.get(url)
        assert page.status_code == 200
        assert "https://" not in page.text and "http://" not in page.text
    script = client.get("/vendor/plotly.min.js")
    assert script.status_code == 200 and "plotly.js" in script.text[:200]
    assert "cdn" not in client.get("/static/dashboard.js").text.lower()


def test_names_are_escaped_in_pages(run_copy: Run) -> None:
    store = open_store(run_copy.db_url)
    try:
        trial = store.list_trials(NAME)[0]
        evil = 'x<img src=x onerror="alert(1)">'
        store.create_trial(TrialRecord(evil, NAME, dict(trial.assignment)))
        page = make_client(store, run_copy).get(f"/trials/{evil}")
        assert page.status_code == 200
        assert "<img" not in page.text
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page.text
    finally:
        store.close()


# -- logs stay inside the logs folder ------------------------------------------------------------


def test_a_log_outside_the_logs_folder_is_refused(run_copy: Run, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    logs = run_copy.workdir / "logs"
    link = logs / NAME / "link.log"
    os.symlink(secret, link)
    store = open_store(run_copy.db_url)
    try:
        base = store.list_trials(NAME)[0]
        for name, path in (
            ("outside", secret),
            ("dotdot", logs / ".." / ".." / "secret.txt"),
            ("symlink", link),
        ):
            store.create_trial(
                TrialRecord(
                    f"t-{name}", NAME, dict(base.assignment), runner_handle={"log": str(path)}
                )
            )
        client = make_client(store, run_copy)
        for name in ("outside", "dotdot", "symlink"):
            response = client.get(f"/api/trials/t-{name}/log")
            assert response.status_code == 403, name
            assert "outside the logs folder" in response.json()["detail"]
            assert "hunter2" not in response.text
    finally:
        store.close()


# -- actions ------------------------------------------------------------------------------------


def test_actions_are_off_by_default(client: TestClient) -> None:
    for method, url in (
        ("POST", f"/api/experiments/{NAME}/stop"),
        ("POST", f"/api/experiments/{NAME}/budget"),
        ("DELETE", f"/api/experiments/{NAME}"),
    ):
        response = client.request(method, url, json={"maxTrialCount": 20})
        assert response.status_code == 403
        assert "--allow-actions" in response.json()["detail"]
    assert client.get("/api/config").json() == {"actions": False}
    assert client.get(f"/api/experiments/{NAME}").status_code == 200


@pytest.mark.slow
def test_actions_raise_the_budget_stop_and_delete(
    run_copy: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(run_copy.folder)  # where the run's driver and trials run
    store = open_store(run_copy.db_url)
    try:
        client = make_client(store, run_copy, allow_actions=True)
        base = f"/api/experiments/{NAME}"
        header = {"X-Tunery-Action": "1"}
        assert client.post(f"{base}/budget", json={"maxTrialCount": 20}).status_code == 403
        lower = client.post(f"{base}/budget", json={"maxTrialCount": 5}, headers=header)
        assert lower.status_code == 400 and "maxTrialCount: 5" in lower.json()["detail"]
        not_driven = client.post(f"{base}/stop", headers=header)
        assert not_driven.status_code == 409 and "Ctrl-C" in not_driven.json()["detail"]

        raised = client.post(f"{base}/budget", json={"maxTrialCount": 40}, headers=header)
        assert raised.status_code == 200, raised.text
        assert store.get_experiment(NAME).spec["spec"]["maxTrialCount"] == 40
        deadline = time.monotonic() + 60
        while len(store.list_trials(NAME)) == 10 and time.monotonic() < deadline:
            time.sleep(0.2)  # the driver the raise started runs new trials
        assert len(store.list_trials(NAME)) > 10
        stopped = client.post(f"{base}/stop", headers=header)
        assert stopped.status_code == 200, stopped.text
        count = len(store.list_trials(NAME))
        time.sleep(1.0)
        assert len(store.list_trials(NAME)) == count  # nothing drives it any more
        assert all(t.condition.is_terminal for t in store.list_trials(NAME))

        assert client.delete(base, headers=header).status_code == 200
        assert client.get(base).status_code == 404
        assert client.get("/api/experiments").json() == []
    finally:
        store.close()
