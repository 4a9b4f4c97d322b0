"""Experiments and trials keyed by (namespace, name), as Katib's namespaced resources are.

Adds a ``namespace`` column (NOT NULL, default ``'default'``) to ``experiments``, ``trials``
and ``observation_logs``; existing rows get ``'default'``. The unique keys become
(namespace, name) for experiments and (name, namespace) for trials (name first, so a lookup by
trial name alone, as Katib's DBManager makes, uses the index too); the observation index
becomes (trial_name, namespace, metric_name, time). Trials keep the surrogate
``experiment_id`` foreign key.

SQLite cannot drop a unique constraint in place: Alembic's batch mode copies the table, and
dropping the old ``experiments`` would cascade (ON DELETE CASCADE, foreign keys are on) into
``trials``; so the trial rows are set aside in a temporary table while both tables are
copied, then put back. The downgrade refuses, naming them, while two namespaces hold the same
experiment or trial name (the old schema cannot hold both).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_DEFAULT = sa.text("'default'")
_ASIDE = "_tunery_trials_aside"


def _namespace_column() -> sa.Column[str]:
    return sa.Column("namespace", sa.String(63), server_default=_DEFAULT, nullable=False)


def _is_sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


@contextmanager
def _trials_set_aside() -> Iterator[None]:
    """On SQLite, hold the trial rows in a temporary table while the tables are copied."""
    if not _is_sqlite() or context.is_offline_mode():
        yield
        return
    columns = [c["name"] for c in sa.inspect(op.get_bind()).get_columns("trials")]
    op.execute(f"CREATE TEMP TABLE {_ASIDE} AS SELECT * FROM trials")
    op.execute("DELETE FROM trials")
    yield
    kept = ", ".join(f'"{name}"' for name in columns if name != "namespace")
    op.execute(f"INSERT INTO trials ({kept}) SELECT {kept} FROM {_ASIDE}")
    op.execute(f"DROP TABLE {_ASIDE}")


def upgrade() -> None:
    with _trials_set_aside():
        with op.batch_alter_table("experiments") as batch:
            batch.add_column(_namespace_column())
            batch.drop_constraint("uq_experiments_name", type_="unique")
            batch.create_unique_constraint("uq_experiments_namespace_name", ["namespace", "name"])
        with op.batch_alter_table("trials") as batch:
            batch.add_column(_namespace_column())
            batch.drop_constraint("uq_trials_name", type_="unique")
            batch.create_unique_constraint("uq_trials_name_namespace", ["name", "namespace"])
    op.add_column("observation_logs", _namespace_column())
    op.drop_index("ix_observation_logs_trial_name_metric_name_time", "observation_logs")
    op.create_index(
        "ix_observation_logs_trial_name_namespace_metric_name_time",
        "observation_logs",
        ["trial_name", "namespace", "metric_name", "time"],
    )


def _refuse_shared_names() -> None:
    if context.is_offline_mode():
        return
    connection = op.get_bind()
    for table in ("experiments", "trials"):
        names = connection.execute(
            sa.text(f"SELECT name FROM {table} GROUP BY name HAVING COUNT(*) > 1 ORDER BY name")
        ).scalars()
        shared = list(names)
        if shared:
            raise RuntimeError(
                f"cannot downgrade below revision 0003: {table} {', '.join(shared[:5])} "
                "exist in several namespaces, which the older schema cannot hold; delete or "
                "rename them first"
            )


def downgrade() -> None:
    _refuse_shared_names()
    op.drop_index("ix_observation_logs_trial_name_namespace_metric_name_time", "observation_logs")
    with op.batch_alter_table("observation_logs") as batch:
        batch.drop_column("namespace")
    op.create_index(
        "ix_observation_logs_trial_name_metric_name_time",
        "observation_logs",
        ["trial_name", "metric_name", "time"],
    )
    with _trials_set_aside():
        with op.batch_alter_table("trials") as batch:
            batch.drop_constraint("uq_trials_name_namespace", type_="unique")
            batch.create_unique_constraint("uq_trials_name", ["name"])
            batch.drop_column("namespace")
        with op.batch_alter_table("experiments") as batch:
            batch.drop_constraint("uq_experiments_namespace_name", type_="unique")
            batch.create_unique_constraint("uq_experiments_name", ["name"])
            batch.drop_column("namespace")
