"""Schema migrations: applied on first open, idempotent, in agreement with the models."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tunery.store import StoreError, TrialRecord, migrations, models, open_store
from tunery.store.engine import create_engine, resolve_url
from tunery.trials import ZERO_TIME, Observation, TrialCondition

TABLES = {"experiments", "trials", "observation_logs", migrations.VERSION_TABLE}


def _engine(url: str) -> sa.Engine:
    return create_engine(resolve_url(url))


def test_open_migrates_to_head_once_and_keeps_data(db_url: str) -> None:
    engine = _engine(db_url)
    try:
        assert set(sa.inspect(engine).get_table_names()) & TABLES == set()
        first = open_store(db_url)
        first.create_experiment("exp", {"k": "v"})
        first.create_trial(TrialRecord("t", "exp", {"x": "1"}))
        first.add_observations("t", [Observation.of("loss", 0.5, 0)])
        second = open_store(db_url)  # already at head: nothing to do
        first.close()
        with engine.connect() as connection:
            assert migrations.current_revision(connection) == migrations.head_revision()
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
        assert second.get_experiment("exp").spec == {"k": "v"}
        assert [o.value for o in second.get_observations("t")] == ["0.5"]
        second.close()
    finally:
        engine.dispose()


def test_head_revision_constant_matches_the_versions() -> None:
    assert migrations.head_revision() == migrations.HEAD_REVISION


def test_models_and_migrations_agree(store: object, db_url: str) -> None:
    """Autogenerate finds nothing to do after the migrations ran: the models are the schema."""
    engine = _engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "version_table": migrations.VERSION_TABLE,
                    "include_name": migrations.include_name,
                },
            )
            assert compare_metadata(context, models.metadata) == []
    finally:
        engine.dispose()


KATIB_DDL = {
    "sqlite": "CREATE TABLE observation_logs (trial_name VARCHAR(255) NOT NULL, "
    "id INTEGER PRIMARY KEY, time DATETIME, metric_name VARCHAR(255) NOT NULL, "
    "value TEXT NOT NULL)",
    "postgresql": "CREATE TABLE observation_logs (trial_name VARCHAR(255) NOT NULL, "
    "id serial PRIMARY KEY, time TIMESTAMP(6), metric_name VARCHAR(255) NOT NULL, "
    "value TEXT NOT NULL)",
    "mysql": "CREATE TABLE observation_logs (trial_name VARCHAR(255) NOT NULL, "
    "id INT AUTO_INCREMENT PRIMARY KEY, time DATETIME(6), metric_name VARCHAR(255) NOT NULL, "
    "value TEXT NOT NULL)",
}


def test_adopts_an_existing_katib_observation_logs_table(db_url: str) -> None:
    """A database Katib's db-manager initialised keeps its logs and gains tunery's columns."""
    engine = _engine(db_url)
    backend = "mysql" if engine.dialect.name == "mariadb" else engine.dialect.name
    when = dt.datetime(2024, 3, 1, 8, 0, 0, 250000)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(KATIB_DDL[backend]))
            connection.execute(
                sa.text(
                    "INSERT INTO observation_logs (trial_name, time, metric_name, value) "
                    "VALUES (:t, :w, 'loss', '0.7'), (:t, :z, 'loss', 'unavailable')"
                ),
                {"t": "katib-trial", "w": when, "z": dt.datetime(1, 1, 1)},
            )
    finally:
        engine.dispose()
    store = open_store(db_url)
    try:
        later = dt.datetime(2024, 3, 1, 9, tzinfo=dt.UTC)
        store.add_observations("katib-trial", [Observation.of("loss", 0.6, 5, later)])
        got = store.get_observations("katib-trial")
        assert [(o.value, o.step, o.numeric) for o in got] == [
            ("unavailable", 0, None),
            ("0.7", 0, 0.7),
            ("0.6", 5, 0.6),
        ]
        assert got[0].time == ZERO_TIME
        assert got[1].time == when.replace(tzinfo=dt.UTC)
    finally:
        store.close()


def test_a_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    open_store(url).close()
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num='9999'")
            )
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match=r"schema revision '9999'.* upgrade tunery"):
        open_store(url)


def test_downgrade_to_empty_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    open_store(url).close()
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            command.downgrade(migrations.alembic_config(connection=connection), "base")
        assert set(sa.inspect(engine).get_table_names()) == {migrations.VERSION_TABLE}
        migrations.upgrade(engine)
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()
    store = open_store(url)
    store.create_experiment("exp", {})
    store.close()


def test_0002_backfills_objective_values_and_reads_old_trials(db_url: str) -> None:
    """A store written at revision 0001 upgrades in place: its trials get their objective value
    (by the experiment's objective and metric strategy) and a full read includes them."""
    spec = {"spec": {"objective": {"type": "maximize", "objectiveMetricName": "acc"}}}
    metrics = [{"name": "acc", "min": "0.1", "max": "0.7", "latest": "0.2"}]
    store = open_store(db_url)
    store.create_experiment("old", spec)
    store.create_trial(TrialRecord("a", "old", {"x": "1"}, observation={"metrics": metrics}))
    store.create_trial(TrialRecord("b", "old", {"x": "2"}))
    store.close()
    engine = _engine(db_url)
    try:
        with engine.begin() as connection:
            command.downgrade(migrations.alembic_config(connection=connection), "0001")
        with engine.begin() as connection:
            assert "objective_value" not in {
                c["name"] for c in sa.inspect(connection).get_columns("trials")
            }
        migrations.upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT name, objective_value FROM trials")).all()
        values = {name: value for name, value in rows}
        assert values == {"a": 0.7, "b": None}  # max: the maximize objective's strategy
    finally:
        engine.dispose()
    store = open_store(db_url)
    best = store.best_trial("old")
    assert best is not None and best.name == "a"
    changes = store.list_trial_changes("old", None)
    assert [t.name for t in changes.trials] == ["a", "b"]
    store.update_trial("b", condition=TrialCondition.RUNNING)
    assert [t.name for t in store.list_trial_changes("old", changes.seq).trials] == ["b"]
    store.close()


def _columns(engine: sa.Engine, table: str) -> set[str]:
    with engine.connect() as connection:
        return {c["name"] for c in sa.inspect(connection).get_columns(table)}


def test_0003_keys_by_namespace_keeping_data_and_downgrades(db_url: str) -> None:
    """A store with data at revision 0002 upgrades in place: its experiments, trials and
    observations land in the default namespace (on SQLite too, whose table copy must not
    cascade into the trials), and the same names can then be used in another namespace. The
    downgrade keeps the data, and refuses while two namespaces share a name."""
    store = open_store(db_url)
    store.create_experiment("mnist", {"k": "v"})
    store.create_trial(TrialRecord("t1", "mnist", {"x": "1"}))
    store.create_trial(TrialRecord("t2", "mnist", {"x": "2"}))
    store.add_observations("t1", [Observation.of("loss", 0.5, 0)])
    store.close()
    engine = _engine(db_url)
    try:
        with engine.begin() as connection:
            command.downgrade(migrations.alembic_config(connection=connection), "0002")
        for table in ("experiments", "trials", "observation_logs"):
            assert "namespace" not in _columns(engine, table)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT COUNT(*) FROM trials")).scalar() == 2
        migrations.upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT name, namespace FROM trials ORDER BY name")
            ).all()
            assert [tuple(r) for r in rows] == [("t1", "default"), ("t2", "default")]
            logs = connection.execute(sa.text("SELECT namespace FROM observation_logs")).all()
            assert [tuple(r) for r in logs] == [("default",)]
    finally:
        engine.dispose()
    store = open_store(db_url)
    try:
        assert [t.name for t in store.list_trials("mnist")] == ["t1", "t2"]
        assert [o.value for o in store.get_observations("t1")] == ["0.5"]
        other = store.in_namespace("other")
        other.create_experiment("mnist", {"k": "other"})
        other.create_trial(TrialRecord("t1", "mnist", {"x": "9"}))
        store.delete_experiment("mnist")  # cascades in the default namespace only
        assert other.get_trial("t1").assignment == {"x": "9"}
    finally:
        store.close()
    store = open_store(db_url, namespace="x")
    store.create_experiment("mnist", {})  # "other" has one too
    store.close()
    engine = _engine(db_url)
    try:
        with (
            pytest.raises(RuntimeError, match=r"experiments mnist exist in several namespaces"),
            engine.begin() as connection,
        ):
            command.downgrade(migrations.alembic_config(connection=connection), "0002")
    finally:
        engine.dispose()
