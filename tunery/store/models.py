"""SQLAlchemy tables of the store: ``experiments``, ``trials``, ``observation_logs``.

Core tables, not ORM classes: the store reads and writes columns directly, and the ORM
would add a tenth of a second to every process that opens a store (CLI, collector).

Used by :mod:`tunery.store.sql` (queries) and by the Alembic migrations as the autogenerate
target; a test checks that the two agree. Nothing outside ``tunery.store`` imports it.

Portability choices (SQLite, PostgreSQL, MySQL/MariaDB):

- Timestamps are naive UTC in the database (``DATETIME(6)`` on MySQL, ``TIMESTAMP(6)`` on
  PostgreSQL, ISO text on SQLite), so Katib's zero time ``0001-01-01`` fits everywhere;
  :mod:`tunery.store.sql` converts to and from tz-aware UTC.
- Experiments and trials are keyed by (namespace, name), as Katib's namespaced resources are:
  ``mnist`` may exist in namespaces ``a`` and ``b`` at once, each with its own trials. The
  ``namespace`` columns default to ``'default'`` (Katib's default namespace, and what local
  runs use). Trials keep the surrogate ``experiment_id`` foreign key; their unique key is
  (name, namespace), name first, so Katib's DBManager, whose wire carries a trial name only,
  finds a trial's namespaces through the same index.
- ``observation_logs`` keeps Katib's columns (``trial_name, id, time, metric_name, value``) and
  adds ``namespace`` (the trial's; defaulted so Katib's own db-manager can still insert),
  ``numeric_value`` (finite floats only; NULL for NaN/inf/non-numeric text, which is
  re-parsed from ``value`` on read) and ``step`` (defaulted to 0 so Katib's own db-manager can
  still insert). It has no foreign key to ``trials``: as in Katib, logs may arrive for a trial
  the store has not seen yet.
- ``trials.change_seq`` orders the writes of an experiment's trials: each write takes the next
  value of ``experiments.trial_seq`` under that row's lock, so changes commit in counter order
  and a reader that saw counter ``n`` has seen every change up to ``n`` (the reconciler reads
  only what changed since its last step). ``trials.objective_value`` is derived from the
  ``observation`` document by the store (:mod:`tunery.store.derived`) so the best trial and
  sorted listings are SQL queries.
- MySQL tables are InnoDB, ``utf8mb4`` with a binary no-pad collation (chosen by the
  migration for the server: MariaDB ``utf8mb4_nopad_bin``, MySQL 8 ``utf8mb4_0900_bin``), so
  names compare exactly, case- and trailing-space-sensitive, as on the other backends.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from tunery.store.base import DEFAULT_NAMESPACE, NAMESPACE_LENGTH

NAME_LENGTH = 255
"""Longest experiment, trial and metric name (Katib's ``VARCHAR(255)``)."""

REASON_LENGTH = 255
"""Longest trial condition reason."""

CONDITION_LENGTH = 32

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}

MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    f"{prefix}_{option}": value
    for prefix in ("mysql", "mariadb")
    for option, value in (("engine", "InnoDB"), ("charset", "utf8mb4"))
}
"""The collation is chosen by the initial migration for the server at hand."""

Timestamp = (
    sa.DateTime()
    .with_variant(postgresql.TIMESTAMP(precision=6), "postgresql")
    .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
)
"""Naive UTC with microseconds on every backend."""

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""64-bit autoincrement key; plain INTEGER on SQLite so it aliases the rowid."""

LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
"""Unbounded text (MySQL's TEXT stops at 64 KiB)."""


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
"""Every table of the store; the autogenerate target of the migrations."""

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("spec", sa.JSON(), nullable=False),
    sa.Column("status", sa.JSON(), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    # the experiment's trial change counter: the last change_seq given to one of its trials
    sa.Column("trial_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    sa.Column(
        "namespace",
        sa.String(NAMESPACE_LENGTH),
        nullable=False,
        server_default=sa.text(f"'{DEFAULT_NAMESPACE}'"),
    ),
    sa.UniqueConstraint("namespace", "name"),
    **MYSQL_TABLE_OPTIONS,
)

trials = sa.Table(
    "trials",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column(
        "experiment_id",
        BigId,
        sa.ForeignKey("experiments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("assignment", sa.JSON(), nullable=False),
    sa.Column("condition", sa.String(CONDITION_LENGTH), nullable=False),
    sa.Column("reason", sa.String(REASON_LENGTH), nullable=False),
    sa.Column("message", LongText, nullable=False),
    sa.Column("labels", sa.JSON(), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("start_time", Timestamp, nullable=True),
    sa.Column("completion_time", Timestamp, nullable=True),
    sa.Column("runner_handle", sa.JSON(), nullable=False),
    sa.Column("observation", sa.JSON(), nullable=False),
    sa.Column("early_stopping_rules", sa.JSON(), nullable=False),
    # bumped from experiments.trial_seq by every write of the trial: list_trial_changes
    sa.Column("change_seq", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    # the objective metric's value by its strategy, derived from ``observation`` on write
    sa.Column("objective_value", sa.Double(), nullable=True),
    # the experiment's namespace, copied so that a trial is found by (namespace, name)
    sa.Column(
        "namespace",
        sa.String(NAMESPACE_LENGTH),
        nullable=False,
        server_default=sa.text(f"'{DEFAULT_NAMESPACE}'"),
    ),
    sa.UniqueConstraint("name", "namespace"),  # name first: DBManager looks up by name
    sa.Index(None, "experiment_id", "id"),  # list_trials: creation order per experiment
    sa.Index(None, "experiment_id", "condition"),  # condition filter, count_trials
    sa.Index(None, "experiment_id", "change_seq"),  # list_trial_changes
    sa.Index(None, "experiment_id", "objective_value"),  # best_trial, sorted listings
    **MYSQL_TABLE_OPTIONS,
)

observation_logs = sa.Table(
    "observation_logs",
    metadata,
    # Katib's columns, in Katib's order
    sa.Column("trial_name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("time", Timestamp, nullable=False),
    sa.Column("metric_name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("value", sa.Text(), nullable=False),
    # tunery's additions
    sa.Column("numeric_value", sa.Double(), nullable=True),
    sa.Column("step", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    sa.Column(
        "namespace",
        sa.String(NAMESPACE_LENGTH),
        nullable=False,
        server_default=sa.text(f"'{DEFAULT_NAMESPACE}'"),
    ),
    sa.Index(None, "trial_name", "namespace", "metric_name", "time"),
    **MYSQL_TABLE_OPTIONS,
)
