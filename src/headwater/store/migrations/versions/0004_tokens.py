"""API tokens and the public keys of remote agents.

Revision ID: 0004
Revises: 0003

Tables are spelled out (not imported from ``headwater.store.schema``) so this
revision stays a frozen record of the schema it creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("secret_hash", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("scope_kind", sa.String(), nullable=True),
        sa.Column("scope_value", sa.String(), nullable=True),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_token"),
    )
    op.create_table(
        "agent_key",
        sa.Column("agent", sa.String(), nullable=False),
        sa.Column("token_id", sa.String(), nullable=False),
        sa.Column("public_hex", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("agent", "key_id", name="pk_agent_key"),
        sa.ForeignKeyConstraint(["token_id"], ["api_token.id"], name="fk_agent_key_token"),
    )
    op.create_index("ix_agent_key_token", "agent_key", ["token_id"])
    op.create_index("ix_agent_key_key_id", "agent_key", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_agent_key_key_id", table_name="agent_key")
    op.drop_index("ix_agent_key_token", table_name="agent_key")
    op.drop_table("agent_key")
    op.drop_table("api_token")
