"""Initial schema: runs, specs, task instances, checkpoints, artifacts, claims,
asset uses, environment snapshots and the event log.

Revision ID: 0001
Revises:

The tables are spelled out here rather than created from
``headwater.store.schema.metadata``: a migration is a frozen record of one
schema version, and later edits to the live metadata must not change what
this revision creates. ``tests/store/test_store_migrations.py`` checks that
migrating to head yields exactly the live metadata.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_campaign"),
    )
    op.create_table(
        "workflow_spec",
        sa.Column("spec_hash", sa.String(), nullable=False),
        sa.Column("workflow", sa.String(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("spec_hash", name="pk_workflow_spec"),
    )
    op.create_index("ix_workflow_spec_workflow_created", "workflow_spec", ["workflow", "created_at"])

    op.create_table(
        "run",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("workflow", sa.String(), nullable=False),
        sa.Column("spec_hash", sa.String(), nullable=False),
        sa.Column("campaign", sa.String(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("why", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_run"),
        sa.ForeignKeyConstraint(["campaign"], ["campaign.name"], name="fk_run_campaign"),
    )
    op.create_index("ix_run_workflow_created", "run", ["workflow", "created_at"])
    op.create_index("ix_run_created", "run", ["created_at"])
    op.create_index("ix_run_campaign", "run", ["campaign"])

    op.create_table(
        "task_instance",
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("agent", sa.String(), nullable=True),
        sa.Column("fencing", sa.BigInteger(), nullable=True),
        sa.Column("lease_expiry", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("checkpoint_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "task", name="pk_task_instance"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_task_instance_run"),
    )

    op.create_table(
        "checkpoint",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("workflow", sa.String(), nullable=False),
        sa.Column("task", sa.String(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("bundle", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("parents", sa.JSON(), nullable=False),
        sa.Column("prev", sa.String(), nullable=True),
        sa.Column("cache_key", sa.String(), nullable=True),
        sa.Column("env_fp", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("cache_valid", sa.Boolean(), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoint"),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], name="fk_checkpoint_run"),
    )
    op.create_index("ix_checkpoint_cache_key", "checkpoint", ["cache_key"])
    op.create_index(
        "ix_checkpoint_workflow_task_created", "checkpoint", ["workflow", "task", "created_at"]
    )
    op.create_index("ix_checkpoint_run_seq", "checkpoint", ["run_id", "seq"], unique=True)

    op.create_table(
        "artifact",
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_artifact"),
    )

    op.create_table(
        "checkpoint_artifact",
        sa.Column("checkpoint_id", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.Column("pos", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint(
            "checkpoint_id", "direction", "pos", name="pk_checkpoint_artifact"
        ),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["checkpoint.id"], name="fk_checkpoint_artifact_checkpoint"
        ),
        sa.ForeignKeyConstraint(
            ["sha256"], ["artifact.sha256"], name="fk_checkpoint_artifact_artifact"
        ),
    )
    op.create_index("ix_checkpoint_artifact_sha256", "checkpoint_artifact", ["sha256"])

    op.create_table(
        "claim_value",
        sa.Column("id", AutoId, nullable=False, autoincrement=True),
        sa.Column("checkpoint_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("uncertainty", sa.Float(), nullable=True),
        sa.Column("units", sa.String(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_claim_value"),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["checkpoint.id"], name="fk_claim_value_checkpoint"
        ),
    )
    op.create_index("ix_claim_value_key", "claim_value", ["key"])
    op.create_index("ix_claim_value_checkpoint", "claim_value", ["checkpoint_id"])

    op.create_table(
        "asset_use",
        sa.Column("id", AutoId, nullable=False, autoincrement=True),
        sa.Column("checkpoint_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("direction", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_asset_use"),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["checkpoint.id"], name="fk_asset_use_checkpoint"
        ),
    )
    op.create_index("ix_asset_use_kind_name_version", "asset_use", ["kind", "name", "version"])
    op.create_index("ix_asset_use_checkpoint", "asset_use", ["checkpoint_id"])

    op.create_table(
        "env_snapshot",
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name="pk_env_snapshot"),
    )

    op.create_table(
        "event",
        sa.Column("id", AutoId, nullable=False, autoincrement=True),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("task", sa.String(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("agent", sa.String(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event"),
    )
    op.create_index("ix_event_run_id", "event", ["run_id"])
    op.create_index("ix_event_kind", "event", ["kind"])


def downgrade() -> None:
    for table in (
        "event",
        "env_snapshot",
        "asset_use",
        "claim_value",
        "checkpoint_artifact",
        "artifact",
        "checkpoint",
        "task_instance",
        "run",
        "workflow_spec",
        "campaign",
    ):
        op.drop_table(table)
