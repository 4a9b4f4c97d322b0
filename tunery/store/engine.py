"""Database URLs and SQLAlchemy engines per backend: SQLite, PostgreSQL, MySQL/MariaDB.

Called by :func:`tunery.store.open_store` (through :mod:`tunery.store.sql`) and by the
migrations. :func:`resolve_url` picks the URL (argument, then ``$TUNERY_DB_URL``, then the
SQLite file ``.tunery/tunery.db`` under the current directory) and maps bare schemes to the
drivers tunery ships with (``postgresql://`` → psycopg 3, ``mysql://``/``mariadb://`` →
PyMySQL, both through SQLAlchemy's MySQL dialect, which detects MariaDB).
:func:`create_engine` applies the per-backend settings: SQLite in WAL mode with a 30 s busy
timeout, foreign keys on and ``BEGIN IMMEDIATE`` for write transactions; strict SQL mode and
UTF-8 on MySQL; pre-ping and connect timeouts everywhere.

Passwords never appear in messages: use :func:`describe_url`.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from tunery.files import private_dir, private_file

ENV_DB_URL = "TUNERY_DB_URL"
"""Environment variable naming the database URL when none is given."""

DEFAULT_SQLITE_PATH = Path(".tunery") / "tunery.db"
"""The embedded default database, relative to the current directory."""

SQLITE_BUSY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10

WRITE_OPTION = "tunery_write"
"""Execution option marking a write transaction; SQLite then begins it IMMEDIATE, so a
transaction that reads before it writes waits for the write lock (busy timeout) instead of
failing with "database is locked" when another writer commits in between."""

SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb")

_BARE_SCHEMES = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}

_MYSQL_SQL_MODE = "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO"


_scan_json = json.JSONDecoder().scan_once


def loads_json(text: str | bytes) -> Any:
    """``json.loads`` for the JSON columns, faster on the documents the store itself wrote
    (no surrounding whitespace; ``{}`` everywhere): listing 10,000 trials decodes 50,000."""
    if not isinstance(text, str):  # psycopg hands over bytes
        text = bytes(text).decode()
    if text == "{}":
        return {}
    try:
        value, end = _scan_json(text, 0)
    except (StopIteration, ValueError):
        return json.loads(text)  # leading whitespace, or invalid: json.loads says why
    return value if end == len(text) else json.loads(text)


def describe_url(url: URL) -> str:
    """The URL as text with its password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def _scrub(text: str) -> str:
    """Hide a password in URL-like text that could not be parsed."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def resolve_url(url: str | URL | None = None, *, cwd: Path | None = None) -> URL:
    """The database URL to use, with the driver filled in.

    ``url`` if given, else ``$TUNERY_DB_URL`` if set and non-empty, else
    ``sqlite:///<cwd>/.tunery/tunery.db``.

    Raises:
        ValueError: the URL does not parse or names an unsupported backend.
    """
    raw: str | URL | None = url if url is not None else (os.environ.get(ENV_DB_URL) or None)
    if raw is None:
        path = (cwd if cwd is not None else Path.cwd()) / DEFAULT_SQLITE_PATH
        return URL.create("sqlite", database=str(path))
    if isinstance(raw, URL):
        parsed = raw
    else:
        try:
            parsed = make_url(raw.strip())
        except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
            problem = "its port is not a number" if isinstance(exc, ValueError) else "expected"
            raise ValueError(
                f"invalid database URL {_scrub(raw)!r}: {problem}; e.g. "
                "'sqlite:///path/tunery.db', 'postgresql://user@host/db' or "
                "'mysql://user@host/db'"
            ) from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(
            f"unsupported database backend {backend!r} in {describe_url(parsed)!r}: "
            f"tunery supports {', '.join(SUPPORTED_BACKENDS)}"
        )
    if "+" not in parsed.drivername and parsed.drivername in _BARE_SCHEMES:
        parsed = parsed.set(drivername=_BARE_SCHEMES[parsed.drivername])
    elif "+" in parsed.drivername:  # a driver the user named: SQLAlchemy must know it
        try:
            parsed.get_dialect()
        except NoSuchModuleError:
            raise ValueError(
                f"unknown {backend} driver {parsed.get_driver_name()!r} in "
                f"{describe_url(parsed)!r}: name none (e.g. '{backend}://user@host/db') and "
                "tunery picks the one its extra installs"
            ) from None
    if backend == "mariadb":
        # SQLAlchemy's MySQL dialect detects MariaDB itself; its "mariadb" twin ignores the
        # mysql_* table options (engine, charset, collation), so use one dialect for both.
        parsed = parsed.set(drivername="mysql+" + parsed.get_driver_name())
    return parsed


def is_sqlite_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
    )


def create_engine(url: URL) -> sa.Engine:
    """An engine for ``url`` (as returned by :func:`resolve_url`) with tunery's settings.

    Creates a missing SQLite file owner-only (0600, folders 0700). Connects lazily: nothing is
    contacted until first use.
    """
    backend = url.get_backend_name()
    options: dict[str, Any] = {"pool_pre_ping": True, "json_deserializer": loads_json}
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args.update(check_same_thread=False, timeout=SQLITE_BUSY_TIMEOUT_S)
        if is_sqlite_memory(url):
            options["poolclass"] = StaticPool  # one shared connection, or each sees a new db
        else:
            assert url.database is not None
            _create_sqlite_file(Path(url.database).expanduser(), uri="uri" in url.query)
    elif backend == "postgresql":
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    else:  # mysql, mariadb
        options["pool_recycle"] = 3600  # below the server's default wait_timeout
        if "charset" not in url.query:
            connect_args["charset"] = "utf8mb4"
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    engine = sa.create_engine(url, connect_args=connect_args, **options)
    if backend == "sqlite":
        _install_sqlite_hooks(engine)
    elif backend in ("mysql", "mariadb"):
        _install_mysql_hooks(engine)
    return engine


def _create_sqlite_file(path: Path, *, uri: bool) -> None:
    """Create the database file 0600 in 0700 folders (whatever the umask) before SQLite opens
    it: SQLite gives its -wal and -shm files the database file's mode, so all three stay
    owner-only. An existing file keeps its mode; a ``file:`` URI is left to SQLite."""
    if uri:
        return
    private_dir(path.parent)
    private_file(path)


def _install_sqlite_hooks(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module: SQLAlchemy's "begin" event
        # below emits BEGIN itself, so DDL is transactional and writes can begin IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")  # durable across process crashes
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _enable_wal(cursor: Any) -> None:
    """Put the database in WAL mode, once: the mode is stored in the file. Switching needs a
    moment of exclusive access, and SQLite answers a switch that races another connection's
    with "database is locked" at once, without waiting on busy_timeout; so two processes
    opening a new database together (a controller and a collector, two test workers) retry
    for up to the busy timeout instead of one failing to open the store."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _install_mysql_hooks(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"SET SESSION sql_mode = '{_MYSQL_SQL_MODE}'")
            cursor.execute("SET SESSION time_zone = '+00:00'")
        finally:
            cursor.close()


def missing_sqlite_file(db_url: str | None) -> Path | None:
    """The SQLite file the URL names when that file does not exist (None otherwise)."""
    try:
        url = resolve_url(db_url)
    except ValueError:
        return None  # open_store reports it
    if url.get_backend_name() != "sqlite" or is_sqlite_memory(url) or not url.database:
        return None
    path = Path(url.database).expanduser()
    return None if path.exists() else path
