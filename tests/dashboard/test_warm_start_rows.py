"""The dashboard's trial table tells warm-start trials apart: their reason ``WarmStart`` is in
every row (the page draws a "warm start" badge from it) and the table's search finds them."""

from __future__ import annotations

from tests.tunery.test_seeding import document
from tunery.seeding import enqueue, results_from, warm_start
from tunery.store.base import Store
from tunery.visualization.data import load_snapshot, trials_table


def test_warm_start_rows_carry_their_reason_and_are_searchable(sqlite_store: Store) -> None:
    sqlite_store.create_experiment("exp", document("exp"))
    point = {"lr": 0.1, "layers": 2, "opt": "adam"}
    warm_start(sqlite_store, "exp", results_from([(point, 0.5)], "loss"))
    enqueue(sqlite_store, "exp", [{**point, "layers": 3}])
    table = trials_table(load_snapshot(sqlite_store, "exp"))
    assert [(r["condition"], r["reason"]) for r in table["rows"]] == [
        ("Succeeded", "WarmStart"),
        ("Created", "TrialCreated"),
    ]
    found = trials_table(load_snapshot(sqlite_store, "exp"), search="warmstart")
    assert [r["reason"] for r in found["rows"]] == ["WarmStart"]
