"""Which database errors mean "unavailable, retry" and which are real errors (not retried)."""

from __future__ import annotations

import socket
import sqlite3

import pytest
from sqlalchemy import exc as sa_exc

from tunery.store import StoreUnavailableError, open_store
from tunery.store.sql import is_unavailable


class PgError(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def operational(orig: Exception) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("orig", "unavailable"),
    [
        (PgError("connection refused", None), True),
        (PgError("terminating connection due to administrator command", "57P01"), True),
        (PgError("the database system is starting up", "57P03"), True),
        (PgError("connection failure", "08006"), True),
        (PgError("too many connections", "53300"), True),
        (PgError("lock not available", "55P03"), True),
        (PgError("password authentication failed for user", "28P01"), False),
        (PgError("database does not exist", "3D000"), False),
        (Exception(2003, "Can't connect to MySQL server"), True),
        (Exception(2013, "Lost connection to MySQL server during query"), True),
        (Exception(1205, "Lock wait timeout exceeded"), True),
        (Exception(1045, "Access denied for user"), False),
        (Exception(1049, "Unknown database"), False),
    ],
)
def test_operational_errors_by_code(orig: Exception, unavailable: bool) -> None:
    assert is_unavailable(operational(orig)) is unavailable


def sqlite_error(sql: str, connection: sqlite3.Connection) -> sqlite3.OperationalError:
    with pytest.raises(sqlite3.OperationalError) as caught:
        connection.execute(sql)
    return caught.value


def test_sqlite_busy_is_unavailable_a_missing_table_is_not(tmp_path) -> None:
    path = tmp_path / "t.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    assert is_unavailable(operational(sqlite_error("SELECT * FROM t", other)))
    assert not is_unavailable(operational(sqlite_error("SELECT * FROM missing", holder)))


def test_disconnects_and_pool_timeouts_are_unavailable() -> None:
    invalidated = sa_exc.DBAPIError("SELECT 1", {}, Exception("x"), connection_invalidated=True)
    assert is_unavailable(invalidated)
    assert is_unavailable(sa_exc.TimeoutError("QueuePool limit reached"))
    assert not is_unavailable(sa_exc.ProgrammingError("SELECT", {}, PgError("syntax", "42601")))


def test_a_postgres_port_with_nothing_listening_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{port}"):
            open_store(f"postgresql://u:secret@127.0.0.1:{port}/db")
