"""Alembic migrations of the store schema, run programmatically (no ``alembic.ini``).

Called by :func:`tunery.store.open_store`, which brings every database to the head revision
on first use. :func:`upgrade` is safe when several processes open a fresh database at once:
it checks the revision without locking, and only when behind takes a database-wide lock
(SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock, MySQL ``GET_LOCK``) before Alembic
upgrades, so the other processes wait and then find the schema current. The check is one
query and does not import Alembic, so opening a current database stays cheap (CLI, sidecar).

Developers make a new revision from the models with::

    python -m tunery.store.migrations revision --autogenerate -m "what changed" \\
        [--url postgresql://...]

and then set :data:`HEAD_REVISION` to it (a test checks).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from tunery.store import models
from tunery.store.engine import WRITE_OPTION, describe_url
from tunery.store.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent

HEAD_REVISION = "0003"
"""The newest revision in ``versions/``; equal to :func:`head_revision` (tested)."""

VERSION_TABLE = "tunery_alembic_version"
"""Alembic's bookkeeping table, named so a database shared with other Alembic users is safe."""

MYSQL_LOCK_TIMEOUT_S = 120


def alembic_config(url: str | None = None, connection: sa.Connection | None = None) -> Config:
    """An Alembic config for tunery's migrations, bound to a URL or an open connection."""
    from alembic.config import Config

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
    """The newest revision shipped with this version of tunery, as Alembic reads it."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "tunery ships at least one migration"
    return head


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at; None for a database tunery has not initialised."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    versions = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    return ",".join(sorted(str(row[0]) for row in versions)) or None


def include_name(name: str | None, type_: str, _parent: object) -> bool:
    """Autogenerate looks at tunery's tables only (the database may be shared)."""
    if type_ == "table":
        return name in models.metadata.tables
    return True


def upgrade(engine: sa.Engine) -> None:
    """Bring the database to the head revision; a no-op when it is already there.

    Raises:
        StoreError: the database has a revision this tunery does not know (it is newer).
        TimeoutError: another process held the MySQL migration lock for too long.
        sqlalchemy.exc.SQLAlchemyError: the database failed (the caller translates it).
    """
    with engine.connect() as connection:
        current = current_revision(connection)
        connection.rollback()
    if current == HEAD_REVISION:
        return
    from alembic import command

    if current is not None and not _is_known(current):
        raise StoreError(
            f"database {describe_url(engine.url)} has schema revision {current!r}, which this "
            f"version of tunery does not know (its newest is {head_revision()!r}); "
            "upgrade tunery"
        )
    log.info(
        "database %s is at revision %s; upgrading to %s",
        describe_url(engine.url),
        current or "(empty)",
        head_revision(),
    )
    with engine.connect() as connection, _migration_lock(connection):
        command.upgrade(alembic_config(connection=connection), "head")


def _is_known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(alembic_config())
    try:
        return all(script.get_revision(part) is not None for part in revision.split(","))
    except CommandError:
        return False


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
