"""Trial change counter and objective value: incremental reads and SQL best-trial queries.

Adds ``experiments.trial_seq`` (the per-experiment change counter), ``trials.change_seq`` (the
counter value of the trial's last write) and ``trials.objective_value`` (the objective as its
strategy selects it, derived from ``observation``), with an index on each trial column per
experiment. Existing trials keep ``change_seq`` 0 (a full read includes them) and get their
objective value computed here, in batches, from their experiment's objective.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from tunery.store.derived import ObjectiveRule

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    zero = sa.text("0")
    op.add_column(
        "experiments",
        sa.Column("trial_seq", sa.BigInteger(), server_default=zero, nullable=False),
    )
    op.add_column(
        "trials", sa.Column("change_seq", sa.BigInteger(), server_default=zero, nullable=False)
    )
    op.add_column("trials", sa.Column("objective_value", sa.Double(), nullable=True))
    op.create_index(
        op.f("ix_trials_experiment_id_change_seq"), "trials", ["experiment_id", "change_seq"]
    )
    op.create_index(
        op.f("ix_trials_experiment_id_objective_value"),
        "trials",
        ["experiment_id", "objective_value"],
    )
    if not context.is_offline_mode():
        _backfill_objective_values(op.get_bind())


def _document(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _backfill_objective_values(connection: sa.Connection) -> None:
    experiments = sa.table(
        "experiments", sa.column("id", sa.BigInteger()), sa.column("spec", sa.Text())
    )
    trials = sa.table(
        "trials",
        sa.column("id", sa.BigInteger()),
        sa.column("experiment_id", sa.BigInteger()),
        sa.column("observation", sa.Text()),
        sa.column("objective_value", sa.Double()),
    )
    for experiment_id, spec in connection.execute(sa.select(experiments.c.id, experiments.c.spec)):
        rule = ObjectiveRule.from_spec(_document(spec))
        if rule is None:
            continue
        last = 0
        while True:
            rows = connection.execute(
                sa.select(trials.c.id, trials.c.observation)
                .where(trials.c.experiment_id == experiment_id, trials.c.id > last)
                .order_by(trials.c.id)
                .limit(_BATCH)
            ).all()
            if not rows:
                break
            last = rows[-1][0]
            updates = [
                {"trial_id": trial_id, "value": value}
                for trial_id, observation in rows
                for value in [rule.value(_document(observation))]
                if value is not None
            ]
            if updates:
                connection.execute(
                    sa.update(trials)
                    .where(trials.c.id == sa.bindparam("trial_id"))
                    .values(objective_value=sa.bindparam("value")),
                    updates,
                )


def downgrade() -> None:
    op.drop_index(op.f("ix_trials_experiment_id_objective_value"), table_name="trials")
    op.drop_index(op.f("ix_trials_experiment_id_change_seq"), table_name="trials")
    op.drop_column("trials", "objective_value")
    op.drop_column("trials", "change_seq")
    op.drop_column("experiments", "trial_seq")
