"""The shared work queue: per-run queue state, task rows, work items,
verdicts and the lease log whose ids are the fencing tokens.

Revision ID: 0003
Revises: 0002

Tables are spelled out (not imported from ``headwater.store.schema``) so this
revision stays a frozen record of the schema it creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "queue_run",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("final", sa.Integer(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_queue_run"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_queue_run_run"),
    )
    op.create_index("ix_queue_run_status", "queue_run", ["status"])
    op.create_table(
        "queue_task",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("verifier_role", sa.String(), nullable=False),
        sa.Column("verify", sa.Integer(), nullable=False),
        sa.Column("reject", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("refutations", sa.Integer(), nullable=False),
        sa.Column("deps", sa.JSON(), nullable=False),
        sa.Column("dependents", sa.JSON(), nullable=False),
        sa.Column("branches", sa.JSON(), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("skipped_inputs", sa.Integer(), nullable=False),
        sa.Column("producer", sa.String(), nullable=True),
        sa.Column("checkpoint_id", sa.String(), nullable=True),
        sa.Column("decision", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "task", name="pk_queue_task"),
        sa.ForeignKeyConstraint(["run_id"], ["queue_run.run_id"], name="fk_queue_task_queue_run"),
    )
    op.create_index("ix_queue_task_run_state", "queue_task", ["run_id", "state"])
    op.create_table(
        "queue_item",
        sa.Column("id", AutoId, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=True),
        sa.Column("holder", sa.String(), nullable=True),
        sa.Column("lease_expiry", sa.Float(), nullable=True),
        sa.Column("producer", sa.String(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_queue_item"),
        sa.ForeignKeyConstraint(["run_id", "task"], ["queue_task.run_id", "queue_task.task"],
                                name="fk_queue_item_queue_task"),
    )
    op.create_index("ix_queue_item_claim", "queue_item", ["state", "role", "priority", "id"])
    op.create_index("ix_queue_item_expiry", "queue_item", ["state", "lease_expiry"])
    op.create_index("ix_queue_item_task", "queue_item", ["run_id", "task", "attempt"])
    op.create_index("ix_queue_item_token", "queue_item", ["token"], unique=True)
    op.create_table(
        "queue_verdict",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("verifier", sa.String(), nullable=False),
        sa.Column("approve", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "task", "attempt", "verifier", name="pk_queue_verdict"),
    )
    op.create_table(
        "queue_lease",
        sa.Column("token", AutoId, nullable=False, autoincrement=True),
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("granted_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("token", name="pk_queue_lease"),
    )


def downgrade() -> None:
    for table in ("queue_lease", "queue_verdict", "queue_item", "queue_task", "queue_run"):
        op.drop_table(table)
