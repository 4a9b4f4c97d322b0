"""Alembic environment: run by Alembic itself, never imported by tunery code.

:func:`tunery.store.migrations.upgrade` hands over an open connection (already holding the
migration lock) in ``config.attributes["connection"]``; the developer command line
(``python -m tunery.store.migrations``) gives a URL instead, resolved as ``open_store`` does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from tunery.store import models
from tunery.store.engine import create_engine, resolve_url
from tunery.store.migrations import VERSION_TABLE, include_name

config = context.config


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=models.metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        compare_type=True,
        **kwargs,
    )


def _run_online(connection: sa.Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    url = resolve_url(config.get_main_option("sqlalchemy.url"))
    if context.is_offline_mode():
        _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            _run_online(connection)
            connection.commit()
    finally:
        engine.dispose()


main()
