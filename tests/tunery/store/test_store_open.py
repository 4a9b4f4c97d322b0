"""Opening a store: URL resolution, defaults, driver mapping, SQLite settings, hidden passwords."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from tunery.store import (
    DriverMissingError,
    SqlStore,
    StoreError,
    StoreUnavailableError,
    open_store,
    resolve_db_url,
)
from tunery.store.engine import ENV_DB_URL, create_engine, resolve_url


@pytest.fixture(autouse=True)
def _no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DB_URL, raising=False)


def test_default_is_a_sqlite_file_under_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_url().render_as_string() == f"sqlite:///{tmp_path}/.tunery/tunery.db"
    store = open_store()
    try:
        store.create_experiment("exp", {})
    finally:
        store.close()
    assert (tmp_path / ".tunery" / "tunery.db").is_file()
    reopened = open_store()
    assert [e.name for e in reopened.list_experiments()] == ["exp"]
    reopened.close()


def test_environment_variable_then_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = tmp_path / "env" / "nested" / "from-env.db"
    monkeypatch.setenv(ENV_DB_URL, f"sqlite:///{from_env}")
    assert resolve_db_url() == f"sqlite:///{from_env}"
    store = open_store()
    store.close()
    assert from_env.is_file()  # parent directories made
    explicit = tmp_path / "explicit.db"
    assert resolve_db_url(f"sqlite:///{explicit}") == f"sqlite:///{explicit}"
    monkeypatch.setenv(ENV_DB_URL, "")  # empty means unset
    monkeypatch.chdir(tmp_path)
    assert resolve_db_url().endswith("/.tunery/tunery.db")


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2"),  # an explicit driver is kept
        ("mysql://u@h/db", "mysql+pymysql"),
        ("mariadb://u@h/db", "mysql+pymysql"),  # one dialect; it detects MariaDB itself
        ("mariadb+pymysql://u@h/db", "mysql+pymysql"),
        ("mysql+pymysql://u@h/db", "mysql+pymysql"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_bare_schemes_map_to_the_shipped_drivers(given: str, driver: str) -> None:
    assert resolve_url(given).drivername == driver


def test_bad_urls_are_rejected_without_showing_the_password() -> None:
    with pytest.raises(ValueError, match="unsupported database backend 'oracle'") as raised:
        resolve_url("oracle://scott:tiger-pw@host/db")
    assert "tiger-pw" not in str(raised.value) and "***" in str(raised.value)
    with pytest.raises(ValueError, match="invalid database URL") as raised:
        resolve_url("not a url://user:hunter2@x")
    assert "hunter2" not in str(raised.value)


def test_a_bad_port_or_an_unknown_driver_is_an_invalid_url() -> None:
    with pytest.raises(ValueError, match="its port is not a number") as raised:
        resolve_url("postgresql://u:hunter2@host:abc/db")
    assert "hunter2" not in str(raised.value)
    with pytest.raises(ValueError) as raised:
        resolve_url("mysql+foo://u:hunter2@host/db")
    assert str(raised.value) == (
        "unknown mysql driver 'foo' in 'mysql+foo://u:***@host/db': name none (e.g. "
        "'mysql://user@host/db') and tunery picks the one its extra installs"
    )
    assert resolve_url("sqlite+pysqlite:///x.db").drivername == "sqlite+pysqlite"


@pytest.mark.skipif(
    importlib.util.find_spec("asyncpg") is not None,
    reason="asyncpg is installed",
)
def test_a_driver_the_url_names_that_is_missing_is_a_driver_error() -> None:
    with pytest.raises(DriverMissingError, match=r"the database driver the URL names \(asyncpg\)"):
        open_store("postgresql+asyncpg://u@127.0.0.1:1/db")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://tunery:s3cret-pw@127.0.0.1:1/tunery",
        "mysql://tunery:s3cret-pw@127.0.0.1:1/tunery",
    ],
    ids=["postgresql", "mysql"],
)
def test_unreachable_server_error_hides_the_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreUnavailableError) as raised:
        open_store(url)
    message = str(raised.value)
    assert "s3cret-pw" not in message
    assert "tunery:***@127.0.0.1:1/tunery" in message
    assert "s3cret-pw" not in caplog.text
    assert resolve_db_url(url).count("***") == 1


def test_sqlite_connection_settings(sqlite_store: SqlStore) -> None:
    engine = create_engine(resolve_url(sqlite_store.url))
    try:
        with engine.connect() as connection:
            pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 30_000
    finally:
        engine.dispose()
    assert sqlite_store.backend == "sqlite"
    assert repr(sqlite_store).startswith("SqlStore('sqlite:///")


def test_in_memory_sqlite_keeps_one_database() -> None:
    store = open_store("sqlite://")
    try:
        store.create_experiment("exp", {})
        assert [e.name for e in store.list_experiments()] == ["exp"]
    finally:
        store.close()


def test_store_is_usable_from_threads(sqlite_store: SqlStore) -> None:
    import threading

    sqlite_store.create_experiment("exp", {})
    seen: list[str] = []
    thread = threading.Thread(target=lambda: seen.append(sqlite_store.get_experiment("exp").name))
    thread.start()
    thread.join(timeout=30)
    assert seen == ["exp"]


def test_sqlalchemy_is_not_imported_by_the_records_and_errors() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tunery.store; from tunery.store import Store, TrialRecord, NotFoundError; "
        "assert 'sqlalchemy' not in sys.modules, 'sqlalchemy imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])


def test_schema_gone_after_open_is_a_store_error_not_an_outage(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        engine = store._engine  # the schema vanishes under an open store: waiting won't help
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE trials"))
        with pytest.raises(StoreError, match=r"trial 'x'.*no such table") as caught:
            store.get_trial("x")
        assert not isinstance(caught.value, StoreUnavailableError)
    finally:
        store.close()


@pytest.mark.parametrize("db_url", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True)
def test_mariadb_scheme_gets_the_mysql_dialect_and_exact_names(db_url: str) -> None:
    url = db_url.replace("mysql+pymysql://", "mariadb://", 1)
    assert url.startswith("mariadb://")
    store = open_store(url)
    try:
        for name in ("a", "A", "a "):
            store.create_experiment(name, {})
        assert [e.name for e in store.list_experiments()] == ["a", "A", "a "]
        assert store.get_experiment("a ").name == "a "
    finally:
        store.close()
