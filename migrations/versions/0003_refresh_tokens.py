"""Refresh tokens: one row per token issued, kept as a SHA-256 hash, grouped by login (family).

Revision ID: 0003_refresh_tokens
Revises: 0002_reconcile
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0003_refresh_tokens"
down_revision: str | None = "0002_reconcile"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = advanced_alchemy.types.DateTimeUTC(timezone=True)


def upgrade() -> None:
    op.create_table(
        "refresh_tokens",
        # SHA-256 of the token: the token itself is never stored.
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        # Every token descended from one login shares it; a replay revokes them all.
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        # Set once, by the refresh that rotated it: a second use is a replay.
        sa.Column("used_at", UTC, nullable=True),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_refresh_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_refresh_tokens")),
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])
    # The cascade from users, and a user's tokens.
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_user_id", table_name="refresh_tokens")
    op.drop_index("ix_refresh_tokens_family_id", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
