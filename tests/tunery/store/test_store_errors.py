"""Error translation and conflict retries of the SQL store (no database needed)."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from tunery.store import StoreError, StoreUnavailableError
from tunery.store.sql import SqlStore, _is_conflict, _retry_conflicts, _translate

URL = make_url("postgresql+psycopg://tunery:pa55word@db.example:5432/tunery")


class FakeDriverError(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def operational(message: str, sqlstate: str | None = None) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, FakeDriverError(message, sqlstate))


def test_operational_errors_are_unavailable_and_hide_the_password() -> None:
    error = _translate(operational("auth failed for pa55word"), URL, "get trial 't'")
    assert isinstance(error, StoreUnavailableError)
    assert str(error) == (
        "get trial 't': database postgresql+psycopg://tunery:***@db.example:5432/tunery "
        "unavailable: auth failed for ***"
    )


def test_other_database_errors_are_store_errors() -> None:
    error = _translate(
        sa_exc.ProgrammingError("SELECT", {}, FakeDriverError("syntax error")), URL, "list"
    )
    assert type(error) is StoreError
    assert "syntax error" in str(error) and "pa55word" not in str(error)


def test_deadlocks_and_serialization_failures_are_conflicts() -> None:
    assert _is_conflict(operational("deadlock detected", "40P01"))
    assert _is_conflict(operational("could not serialize", "40001"))
    mysql = sa_exc.OperationalError("INSERT", {}, Exception(1213, "Deadlock found"))
    assert _is_conflict(mysql)
    assert not _is_conflict(operational("connection refused"))
    assert not _is_conflict(None)


class FlakyStore:
    """Stands in for SqlStore: fails its transaction a given number of times."""

    def __init__(self, failures: list[sa_exc.OperationalError]) -> None:
        self.failures = failures
        self.calls = 0

    @_retry_conflicts
    def write(self: SqlStore) -> str:  # type: ignore[misc]
        self.calls += 1  # type: ignore[attr-defined]
        if self.failures:  # type: ignore[attr-defined]
            cause = self.failures.pop(0)  # type: ignore[attr-defined]
            raise _translate(cause, URL, "write") from cause
        return "done"


def test_conflicts_are_retried_other_failures_are_not() -> None:
    flaky = FlakyStore([operational("deadlock", "40P01"), operational("deadlock", "40001")])
    assert flaky.write() == "done"
    assert flaky.calls == 3
    down = FlakyStore([operational("server closed the connection")])
    with pytest.raises(StoreUnavailableError, match="server closed"):
        down.write()
    assert down.calls == 1
    stuck = FlakyStore([operational("deadlock", "40P01") for _ in range(10)])
    with pytest.raises(StoreUnavailableError, match="deadlock"):
        stuck.write()
    assert stuck.calls == 4
