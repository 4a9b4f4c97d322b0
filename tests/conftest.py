"""Shared fixtures: a fresh, isolated database per test on every store backend.

- ``db_url``: parametrised over ``sqlite``, ``postgresql``, ``mysql`` (test ids exactly these;
  the last two carry the ``postgres``/``mysql`` markers). Yields the URL of a database no
  other test sees: a temporary SQLite file; a uniquely named PostgreSQL schema (selected by
  ``search_path`` in the URL); a uniquely named MariaDB/MySQL database ``tunery_test_<hex>``.
  Schemas and databases are dropped afterwards. A server that cannot be reached skips the
  test with the reason, e.g. ``PostgreSQL not reachable at 127.0.0.1:5432: ...``.
- ``store``: ``open_store(db_url)``, closed after the test.
- ``sqlite_store``: the same on SQLite only, for tests that need no server.

Servers default to the CI services and are overridden by ``$TUNERY_TEST_POSTGRES_URL`` and
``$TUNERY_TEST_MYSQL_URL`` (SQLAlchemy URLs of a database the test user may create
schemas/databases in).
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tunery.store import Store

POSTGRES_URL_ENV = "TUNERY_TEST_POSTGRES_URL"
MYSQL_URL_ENV = "TUNERY_TEST_MYSQL_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
SERVER_CONNECT_TIMEOUT_S = 3

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
]


class _Server:
    """Admin access to one database server, connected once per test session."""

    def __init__(self, label: str, env: str, default: str) -> None:
        from tunery.store.engine import resolve_url

        self.label = label
        self.url = resolve_url(os.environ.get(env) or default)
        self._engine: Any = None
        self._error: str | None = None
        # Dropping a database is slow DDL; do it behind the next tests, finish at session end.
        self._dropper = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"drop-{label}")

    def engine(self) -> Any:
        """The admin engine (autocommit), or skip the test if the server is unreachable."""
        import sqlalchemy as sa

        if self._engine is None and self._error is None:
            engine = sa.create_engine(
                self.url,
                isolation_level="AUTOCOMMIT",
                connect_args={"connect_timeout": SERVER_CONNECT_TIMEOUT_S},
            )
            try:
                with engine.connect() as connection:
                    connection.execute(sa.text("SELECT 1"))
                self._engine = engine
            except Exception as exc:  # any failure to connect means "not reachable"
                engine.dispose()
                detail = " ".join(str(getattr(exc, "orig", exc)).split())
                self._error = (
                    f"{self.label} not reachable at {self.url.host}:{self.url.port}: {detail}"
                )
        if self._error is not None:
            pytest.skip(self._error)
        return self._engine

    def drop_later(self, statements: list[str], what: str) -> None:
        """Run the drop statements in the background; failures become warnings."""
        self._dropper.submit(_drop, self._engine, statements, what)

    def dispose(self) -> None:
        self._dropper.shutdown(wait=True)
        if self._engine is not None:
            self._engine.dispose()


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[_Server]:
    server = _Server("PostgreSQL", POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    yield server
    server.dispose()


@pytest.fixture(scope="session")
def _mysql_server() -> Iterator[_Server]:
    server = _Server("MySQL/MariaDB", MYSQL_URL_ENV, DEFAULT_MYSQL_URL)
    yield server
    server.dispose()


def _unique_name() -> str:
    return f"tunery_test_{uuid.uuid4().hex[:12]}"


def _drop(engine: Any, statements: list[str], what: str) -> None:
    import sqlalchemy as sa

    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))
    except Exception as exc:  # leave the test result alone; say what leaked
        warnings.warn(f"could not drop test {what}: {exc}", stacklevel=2)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, isolated, empty database on the parametrised backend."""
    import sqlalchemy as sa

    backend = request.param
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tunery.db'}"
        return
    if backend == "postgresql":
        server: _Server = request.getfixturevalue("_postgres_server")
        engine = server.engine()
        schema = _unique_name()
        with engine.connect() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = server.url.update_query_dict({"options": f"-csearch_path={schema}"})
        try:
            yield url.render_as_string(hide_password=False)
        finally:
            server.drop_later(
                ["SET lock_timeout = '10s'", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
                f"schema {schema}",
            )
        return
    server = request.getfixturevalue("_mysql_server")
    engine = server.engine()
    database = _unique_name()
    with engine.connect() as connection:
        connection.execute(
            sa.text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        )
    try:
        yield server.url.set(database=database).render_as_string(hide_password=False)
    finally:
        server.drop_later(
            ["SET SESSION lock_wait_timeout = 10", f"DROP DATABASE IF EXISTS `{database}`"],
            f"database {database}",
        )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """``open_store(db_url)`` on every backend, closed after the test."""
    from tunery.store import open_store

    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A store on a fresh SQLite file (no server needed)."""
    from tunery.store import open_store

    opened = open_store(f"sqlite:///{tmp_path / 'tunery.db'}")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def password_db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL schema's URL with a password in it, for tests that search trial
    environments and logs for it (the test server's trust authentication ignores it)."""
    import sqlalchemy as sa

    server = request.getfixturevalue("_postgres_server")
    engine = server.engine()
    schema = _unique_name()
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = server.url.set(password="tunery-Secret-pw-4711").update_query_dict(
        {"options": f"-csearch_path={schema}"}
    )
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        server.drop_later([f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'], f"schema {schema}")
