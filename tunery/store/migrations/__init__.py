"""Alembic migrations of the store schema, run programmatically (no ``alembic.ini``).

Called by :func:`tunery.store.open_store`, which brings every database to the head revision
on first use. :func:`upgrade` is safe when several processes open a fresh database at once:
it checks the revision without locking, and only when behind takes a database-wide lock
(SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock, MySQL ``GET_LOCK``) before Alembic
upgrades, so the second process waits and then finds the schema current.

Developers make a new revision from the models with::

    python -m tunery.store.migrations revision --autogenerate -m "what changed" \\
        [--url postgresql://...]
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from tunery.store import models
from tunery.store.engine import WRITE_OPTION, describe_url
from tunery.store.errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent

VERSION_TABLE = "tunery_alembic_version"
"""Alembic's bookkeeping table, named so a database shared with other Alembic users is safe."""

MYSQL_LOCK_TIMEOUT_S = 120


def alembic_config(url: str | None = None, connection: sa.Connection | None = None) -> Config:
    """An Alembic config for tunery's migrations, bound to a URL or an open connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_table", VERSION_TABLE)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision shipped with this version of tunery."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "tunery ships at least one migration"
    return head


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at; None for a database tunery has not initialised."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _is_known(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def include_name(name: str | None, type_: str, _parent: object) -> bool:
    """Autogenerate looks at tunery's tables only (the database may be shared)."""
    if type_ == "table":
        return name in models.Base.metadata.tables
    return True


def upgrade(engine: sa.Engine) -> None:
    """Bring the database to the head revision; a no-op when it is already there."""
    head = head_revision()
    with engine.connect() as connection:
        current = current_revision(connection)
        connection.rollback()
    if current == head:
        return
    if current is not None and not _is_known(current):
        raise StoreError(
            f"database {describe_url(engine.url)} has schema revision {current!r}, which this "
            f"version of tunery does not know (its newest is {head!r}); upgrade tunery"
        )
    log.info(
        "upgrading database %s from %s to %s", describe_url(engine.url), current or "empty", head
    )
    with engine.connect() as connection, _migration_lock(connection):
        command.upgrade(alembic_config(connection=connection), "head")


@contextlib.contextmanager
def _migration_lock(connection: sa.Connection) -> Iterator[None]:
    """Hold a database-wide lock and a transaction around the upgrade."""
    backend = connection.dialect.name
    if backend == "sqlite":
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():  # BEGIN IMMEDIATE: one writer, others wait (busy timeout)
            yield
    elif backend == "postgresql":
        with connection.begin():  # DDL is transactional; the lock ends with the transaction
            connection.execute(
                sa.text(
                    "SELECT pg_advisory_xact_lock(hashtext('tunery_migrate:' || current_schema()))"
                )
            )
            yield
    else:  # mysql, mariadb: DDL commits implicitly, so use a named session lock
        name = f"tunery_migrate:{connection.engine.url.database or ''}"[:64]
        got = connection.execute(
            sa.text("SELECT GET_LOCK(:name, :timeout)"),
            {"name": name, "timeout": MYSQL_LOCK_TIMEOUT_S},
        ).scalar()
        connection.commit()  # the lock belongs to the session, not the transaction
        if got != 1:
            raise TimeoutError(
                f"waited {MYSQL_LOCK_TIMEOUT_S} s for lock {name!r} held by another process "
                "migrating the same database"
            )
        try:
            with connection.begin():
                yield
        finally:
            connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
            connection.commit()
