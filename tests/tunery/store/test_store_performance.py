"""Store speed on SQLite: bulk appends, big listings, indexed observation reads.

Timing bounds are loose regression guards (the machine is shared); the structural checks
(which statements run, which index a query uses) are exact.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from tunery.store import SqlStore
from tunery.store.models import trials
from tunery.trials import Observation, TrialCondition

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@contextmanager
def recorded_statements(store: SqlStore) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    engine = store._engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def seed_trials(store: SqlStore, experiment: str, count: int) -> None:
    """Insert many trials in one transaction (create_trial is one transaction each)."""
    store.create_experiment(experiment, {})
    with store._engine.connect() as connection:
        experiment_id = connection.execute(
            sa.text("SELECT id FROM experiments WHERE name = :n"), {"n": experiment}
        ).scalar_one()
    created = T0.replace(tzinfo=None)
    rows = [
        {
            "name": f"{experiment}-{i:05d}",
            "experiment_id": experiment_id,
            "assignment": {"lr": str(i / count), "batch": "32"},
            "condition": "Succeeded" if i % 3 else "Running",
            "reason": "TrialSucceeded",
            "message": "done",
            "labels": {},
            "created_at": created,
            "start_time": created,
            "completion_time": None,
            "runner_handle": {"pid": i},
            "observation": {"metrics": [{"name": "loss", "latest": str(i)}]},
            "early_stopping_rules": [],
        }
        for i in range(count)
    ]
    with store.session_scope("seed", write=True) as connection:
        connection.execute(sa.insert(trials), rows)


def test_add_observations_is_one_bulk_insert_and_fast(sqlite_store: SqlStore) -> None:
    batch = [
        Observation.of("loss", 1 / (i + 1), i, T0 + dt.timedelta(seconds=i)) for i in range(1000)
    ]
    with recorded_statements(sqlite_store) as statements:
        assert sqlite_store.add_observations("warmup", batch) == 1000
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1  # one executemany, not a statement per row
    best = 0.0
    for attempt in range(3):
        started = time.perf_counter()
        for b in range(10):
            sqlite_store.add_observations(f"t{attempt}-{b}", batch)
        best = max(best, 10_000 / (time.perf_counter() - started))
    # ~100k rows/s on an idle laptop core; a row-at-a-time regression would be ~5k.
    assert best > 20_000, f"add_observations wrote only {best:,.0f} rows/s"


def test_listing_ten_thousand_trials_reads_no_observations(sqlite_store: SqlStore) -> None:
    seed_trials(sqlite_store, "big", 10_000)
    sqlite_store.add_observations("big-00001", [Observation.of("loss", 0.5, 0)] * 500)
    with recorded_statements(sqlite_store) as statements:
        started = time.perf_counter()
        listed = sqlite_store.list_trials("big")
        elapsed = time.perf_counter() - started
        running = sqlite_store.list_trials("big", [TrialCondition.RUNNING])
        counts = sqlite_store.count_trials("big")
        sqlite_store.get_trial("big-00001")
    assert len(listed) == 10_000 and listed[0].name == "big-00000"
    assert listed[-1].assignment == {"lr": "0.9999", "batch": "32"}
    assert len(running) == 3334 and counts[TrialCondition.SUCCEEDED] == 6666
    assert not any("observation_logs" in s for s in statements)
    assert elapsed < 3.0, f"listing 10,000 trials took {elapsed:.2f} s"


def test_observation_and_trial_queries_use_indexes(sqlite_store: SqlStore) -> None:
    sqlite_store.create_experiment("e", {})
    sqlite_store.add_observations("t", [Observation.of("loss", 0.1, 0)])
    with recorded_statements(sqlite_store) as statements:
        sqlite_store.get_observations("t", "loss", start_time=T0)
        sqlite_store.get_observations("t")
        sqlite_store.observation_counts("t")
        sqlite_store.list_trials("e", [TrialCondition.RUNNING])
    selects = [s for s in statements if "observation_logs" in s or "FROM trials" in s]
    assert len(selects) == 4
    with sqlite_store._engine.connect() as connection:
        for statement in selects:
            plan = " ".join(
                str(row[-1])
                for row in connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, _dummy_params(statement)
                )
            )
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (statement, plan)
            assert "SCAN observation_logs" not in plan and "SCAN trials" not in plan, plan


def _dummy_params(statement: str) -> tuple[object, ...]:
    return ("x",) * statement.count("?")
