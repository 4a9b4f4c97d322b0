"""Initial schema: experiments, trials, observation_logs.

A database that already holds Katib's ``observation_logs`` table (its db-manager's schema:
``trial_name, id, time, metric_name, value``) is adopted rather than recreated: the
``numeric_value`` and ``step`` columns and the (trial, metric, time) index are added and the
existing rows are kept.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import mysql, postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


TIMESTAMP = (
    sa.DateTime()
    .with_variant(postgresql.TIMESTAMP(precision=6), "postgresql")
    .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def _mysql_options() -> dict[str, str]:
    """InnoDB, utf8mb4, and a binary collation that does not ignore trailing spaces, so names
    compare exactly as on the other backends (plain ``utf8mb4_bin`` pads with spaces)."""
    dialect = op.get_bind().dialect
    collation = "utf8mb4_bin"
    if dialect.name in ("mysql", "mariadb"):
        version = dialect.server_version_info or ()
        if getattr(dialect, "is_mariadb", False):
            collation = "utf8mb4_nopad_bin"
        elif version >= (8, 0):
            collation = "utf8mb4_0900_bin"
    options = {"engine": "InnoDB", "charset": "utf8mb4", "collate": collation}
    return {
        f"{prefix}_{key}": value
        for prefix in ("mysql", "mariadb")
        for key, value in options.items()
    }


def _has_table(name: str) -> bool:
    """Whether the table exists; offline (``--sql``) scripts assume an empty database."""
    if context.is_offline_mode():
        return False
    return sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    mysql_options = _mysql_options()
    op.create_table(
        "experiments",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("name", name=op.f("uq_experiments_name")),
        **mysql_options,
    )
    op.create_table(
        "trials",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("experiment_id", BIG_ID, nullable=False),
        sa.Column("assignment", sa.JSON(), nullable=False),
        sa.Column("condition", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("message", LONG_TEXT, nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("start_time", TIMESTAMP, nullable=True),
        sa.Column("completion_time", TIMESTAMP, nullable=True),
        sa.Column("runner_handle", sa.JSON(), nullable=False),
        sa.Column("observation", sa.JSON(), nullable=False),
        sa.Column("early_stopping_rules", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_trials_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trials")),
        sa.UniqueConstraint("name", name=op.f("uq_trials_name")),
        **mysql_options,
    )
    op.create_index(op.f("ix_trials_experiment_id_id"), "trials", ["experiment_id", "id"])
    op.create_index(
        op.f("ix_trials_experiment_id_condition"), "trials", ["experiment_id", "condition"]
    )

    if _has_table("observation_logs"):
        op.add_column("observation_logs", sa.Column("numeric_value", sa.Double(), nullable=True))
        op.add_column(
            "observation_logs",
            sa.Column("step", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        )
    else:
        op.create_table(
            "observation_logs",
            sa.Column("trial_name", sa.String(255), nullable=False),
            sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
            sa.Column("time", TIMESTAMP, nullable=False),
            sa.Column("metric_name", sa.String(255), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.Column("numeric_value", sa.Double(), nullable=True),
            sa.Column("step", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_observation_logs")),
            **mysql_options,
        )
    op.create_index(
        op.f("ix_observation_logs_trial_name_metric_name_time"),
        "observation_logs",
        ["trial_name", "metric_name", "time"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_observation_logs_trial_name_metric_name_time"), table_name="observation_logs"
    )
    op.drop_table("observation_logs")
    op.drop_index(op.f("ix_trials_experiment_id_condition"), table_name="trials")
    op.drop_index(op.f("ix_trials_experiment_id_id"), table_name="trials")
    op.drop_table("trials")
    op.drop_table("experiments")
