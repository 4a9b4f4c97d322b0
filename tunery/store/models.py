"""SQLAlchemy table definitions of the store: ``experiments``, ``trials``, ``observation_logs``.

Used by :mod:`tunery.store.sql` (queries) and by the Alembic migrations as the autogenerate
target; a test checks that the two agree. Nothing else imports this module.

Portability choices (SQLite, PostgreSQL, MySQL/MariaDB):

- Timestamps are naive UTC in the database (``DATETIME(6)`` on MySQL, ``TIMESTAMP(6)`` on
  PostgreSQL, ISO text on SQLite), so Katib's zero time ``0001-01-01`` fits everywhere;
  :mod:`tunery.store.sql` converts to and from tz-aware UTC.
- ``observation_logs`` keeps Katib's columns (``trial_name, id, time, metric_name, value``) and
  adds ``numeric_value`` (finite floats only; NULL for NaN/inf/non-numeric text, which is
  re-parsed from ``value`` on read) and ``step`` (defaulted to 0 so Katib's own db-manager can
  still insert). It has no foreign key to ``trials``: as in Katib, logs may arrive for a trial
  the store has not seen yet.
- MySQL tables are InnoDB, ``utf8mb4`` with a binary no-pad collation (chosen by the
  migration for the server: MariaDB ``utf8mb4_nopad_bin``, MySQL 8 ``utf8mb4_0900_bin``), so
  names compare exactly, case- and trailing-space-sensitive, as on the other backends.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class ExperimentRow(Base):
    __tablename__ = "experiments"
    __table_args__ = (MYSQL_TABLE_OPTIONS,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), nullable=False, unique=True)
    spec: Mapped[Any] = mapped_column(sa.JSON(), nullable=False)
    status: Mapped[Any] = mapped_column(sa.JSON(), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)


class TrialRow(Base):
    __tablename__ = "trials"
    __table_args__ = (
        sa.Index(None, "experiment_id", "id"),
        sa.Index(None, "experiment_id", "condition"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), nullable=False, unique=True)
    experiment_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False
    )
    assignment: Mapped[Any] = mapped_column(sa.JSON(), nullable=False)
    condition: Mapped[str] = mapped_column(sa.String(CONDITION_LENGTH), nullable=False)
    reason: Mapped[str] = mapped_column(sa.String(REASON_LENGTH), nullable=False)
    message: Mapped[str] = mapped_column(LongText, nullable=False)
    labels: Mapped[Any] = mapped_column(sa.JSON(), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)
    start_time: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    completion_time: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    runner_handle: Mapped[Any] = mapped_column(sa.JSON(), nullable=False)
    observation: Mapped[Any] = mapped_column(sa.JSON(), nullable=False)
    early_stopping_rules: Mapped[Any] = mapped_column(sa.JSON(), nullable=False)


class ObservationLogRow(Base):
    __tablename__ = "observation_logs"
    __table_args__ = (
        sa.Index(None, "trial_name", "metric_name", "time"),
        MYSQL_TABLE_OPTIONS,
    )

    trial_name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), nullable=False)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    time: Mapped[dt.datetime] = mapped_column(Timestamp, nullable=False)
    metric_name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), nullable=False)
    value: Mapped[str] = mapped_column(sa.Text(), nullable=False)
    numeric_value: Mapped[float | None] = mapped_column(sa.Double(), nullable=True)
    step: Mapped[int] = mapped_column(sa.BigInteger(), nullable=False, server_default=sa.text("0"))


experiments = ExperimentRow.__table__
trials = TrialRow.__table__
observation_logs = ObservationLogRow.__table__
