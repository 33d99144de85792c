"""Oversight: assets, version statuses, pins, policies, canaries, trust marks
and the oversight audit log; covering indexes for lineage walks.

Revision ID: 0002
Revises: 0001

Tables are spelled out (not imported from ``headwater.store.schema``) so this
revision stays a frozen record of the schema it creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "asset",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", name="pk_asset"),
    )
    op.create_table(
        "asset_version",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", "version", name="pk_asset_version"),
    )
    op.create_index("ix_asset_version_status", "asset_version", ["status"])

    op.create_table(
        "asset_pin",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", "scope", name="pk_asset_pin"),
    )
    op.create_table(
        "policy",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_policy"),
    )
    op.create_table(
        "canary",
        sa.Column("id", AutoId, nullable=False, autoincrement=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("baseline", sa.String(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("verdict", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_canary"),
    )
    op.create_index("ix_canary_asset", "canary", ["kind", "name", "version"])

    op.create_table(
        "checkpoint_mark",
        sa.Column("checkpoint_id", sa.String(), nullable=False),
        sa.Column("mark", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("checkpoint_id", name="pk_checkpoint_mark"),
    )
    op.create_table(
        "audit",
        sa.Column("id", AutoId, nullable=False, autoincrement=True),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("cause", sa.String(), nullable=True),
        sa.Column("policy", sa.String(), nullable=True),
        sa.Column("policy_version", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(), nullable=True),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("task", sa.String(), nullable=True),
        sa.Column("signal", sa.JSON(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit"),
    )
    op.create_index("ix_audit_subject", "audit", ["subject"])
    op.create_index("ix_audit_run_id", "audit", ["run_id"])
    op.create_index("ix_audit_ts", "audit", ["ts"])

    # Blast radius walks the lineage with index-only lookups: these replace
    # narrower indexes of 0001 (same leading columns, so every query those
    # served is still served) and add one on checkpoint.
    op.drop_index("ix_checkpoint_artifact_sha256", table_name="checkpoint_artifact")
    op.create_index("ix_checkpoint_artifact_lineage", "checkpoint_artifact", ["sha256", "direction", "checkpoint_id"])
    op.drop_index("ix_claim_value_checkpoint", table_name="claim_value")
    op.create_index("ix_claim_value_lineage", "claim_value", ["checkpoint_id", "key"])
    op.drop_index("ix_asset_use_kind_name_version", table_name="asset_use")
    op.create_index("ix_asset_use_lineage", "asset_use", ["kind", "name", "version", "direction", "checkpoint_id"])
    op.create_index("ix_checkpoint_lineage", "checkpoint", ["id", "run_id", "workflow", "task", "status", "seq"])


def downgrade() -> None:
    op.drop_index("ix_checkpoint_lineage", table_name="checkpoint")
    op.drop_index("ix_asset_use_lineage", table_name="asset_use")
    op.create_index("ix_asset_use_kind_name_version", "asset_use", ["kind", "name", "version"])
    op.drop_index("ix_claim_value_lineage", table_name="claim_value")
    op.create_index("ix_claim_value_checkpoint", "claim_value", ["checkpoint_id"])
    op.drop_index("ix_checkpoint_artifact_lineage", table_name="checkpoint_artifact")
    op.create_index("ix_checkpoint_artifact_sha256", "checkpoint_artifact", ["sha256"])
    for table in ("audit", "checkpoint_mark", "canary", "policy", "asset_pin", "asset_version", "asset"):
        op.drop_table(table)
