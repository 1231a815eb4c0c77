"""Sessions: a row per login, the lock that serialises its refreshes, revokes and deletion.

Revision ID: 0004_sessions
Revises: 0003_refresh_tokens
Create Date: 2026-12-06

Every existing family gets its row: started at its first token, ending 90 days later (the
default SESSION_MAX_DAYS), revoked when any of its tokens was (so a token that slipped past
a revoke by the race this closes is revoked with its family). Refresh tokens then belong to
their session (ON DELETE CASCADE), whose state and user replace the tokens' own
``revoked_at`` and ``user_id``: a token reaches its user through its session only, so an
account deletion's cascade and the session purge lock rows in one order. The downgrade
gives every token its session's ``user_id`` and ``revoked_at`` back.
"""

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision: str = "0004_sessions"
down_revision: str | None = "0003_refresh_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = advanced_alchemy.types.DateTimeUTC(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("started_at", UTC, server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.Column("revoked_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.create_index(
        "ix_sessions_revoked_at",
        "sessions",
        ["revoked_at"],
        postgresql_where=sa.text("revoked_at IS NOT NULL"),
    )
    # 90 days: SESSION_MAX_DAYS' default (migrations read no settings).
    op.execute(
        "INSERT INTO sessions (id, user_id, started_at, expires_at, revoked_at)"
        " SELECT family_id, min(user_id), min(created_at),"
        " min(created_at) + interval '90 days', min(revoked_at)"
        " FROM refresh_tokens GROUP BY family_id"
    )
    op.create_foreign_key(
        op.f("fk_refresh_tokens_family_id_sessions"),
        "refresh_tokens",
        "sessions",
        ["family_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.drop_column("refresh_tokens", "revoked_at")
    op.drop_index("ix_refresh_tokens_user_id", table_name="refresh_tokens")
    op.drop_constraint(
        op.f("fk_refresh_tokens_user_id_users"), "refresh_tokens", type_="foreignkey"
    )
    op.drop_column("refresh_tokens", "user_id")
    op.create_index("ix_refresh_tokens_expires_at", "refresh_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_expires_at", table_name="refresh_tokens")
    op.add_column("refresh_tokens", sa.Column("user_id", sa.Integer(), nullable=True))
    op.add_column("refresh_tokens", sa.Column("revoked_at", UTC, nullable=True))
    op.execute(
        "UPDATE refresh_tokens SET user_id = sessions.user_id, revoked_at = sessions.revoked_at"
        " FROM sessions WHERE sessions.id = refresh_tokens.family_id"
    )
    op.alter_column("refresh_tokens", "user_id", nullable=False)
    op.create_foreign_key(
        op.f("fk_refresh_tokens_user_id_users"),
        "refresh_tokens",
        "users",
        ["user_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])
    op.drop_constraint(
        op.f("fk_refresh_tokens_family_id_sessions"), "refresh_tokens", type_="foreignkey"
    )
    op.drop_index("ix_sessions_revoked_at", table_name="sessions")
    op.drop_index("ix_sessions_expires_at", table_name="sessions")
    op.drop_index("ix_sessions_user_id", table_name="sessions")
    op.drop_table("sessions")
