"""The lineage index behind blast radius: checkpoints as integer nodes, and
their outputs and followers as integer edges.

Revision ID: 0005
Revises: 0004

Derived data, filled from the tables that already hold the lineage
(``checkpoint``, ``checkpoint_artifact``, ``claim_value``, ``asset_use``) by
the first blast-radius query after the upgrade, so the upgrade itself copies
nothing. Tables are spelled out (not imported from
``headwater.store.schema``) so this revision stays a frozen record of the
schema it creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lineage_node",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("checkpoint_id", sa.String(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lineage_node"),
        sa.UniqueConstraint("checkpoint_id", name="uq_lineage_node_checkpoint"),
    )
    op.create_table(
        "lineage_edge",
        sa.Column("parent", sa.Integer(), nullable=False),
        sa.Column("via", sa.String(), nullable=False),
        sa.Column("child", sa.Integer(), nullable=False),
    )
    op.create_index("ix_lineage_edge_parent", "lineage_edge", ["parent", "child", "via"])
    op.create_table(
        "lineage_asset",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lineage_asset"),
        sa.UniqueConstraint("kind", "name", "version", name="uq_lineage_asset"),
    )
    op.create_table(
        "lineage_use",
        sa.Column("asset", sa.Integer(), nullable=False),
        sa.Column("node", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("asset", "node", name="pk_lineage_use"),
    )


def downgrade() -> None:
    op.drop_table("lineage_use")
    op.drop_table("lineage_asset")
    op.drop_index("ix_lineage_edge_parent", table_name="lineage_edge")
    op.drop_table("lineage_edge")
    op.drop_table("lineage_node")
