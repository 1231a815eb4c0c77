"""The refresh grant's statements, in the order it runs them: the user's row, the session's
row (both locked: the order shared/accounts/sessions.py fixes), then the token itself."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.models import LoginSession, RefreshToken, User


class SessionState(NamedTuple):
    id: uuid.UUID
    user_id: int
    expires_at: datetime
    revoked: bool
    ended: bool  # past expires_at, by the database's clock


async def lock_user(conn: AsyncConnection, token_hash: bytes) -> int | None:
    """The token's user, locked FOR KEY SHARE; None for an unknown token or a deleted user.

    An account deletion in progress holds the row FOR UPDATE: this waits, then finds nothing.
    """
    return await conn.scalar(
        select(User.id)
        .where(
            User.id
            == select(LoginSession.user_id)
            .join(RefreshToken, RefreshToken.family_id == LoginSession.id)
            .where(RefreshToken.token_hash == token_hash)
            .scalar_subquery()
        )
        .with_for_update(read=True, key_share=True)
    )


async def lock_session(conn: AsyncConnection, token_hash: bytes) -> SessionState | None:
    """The token's session, locked FOR UPDATE, its state read after the lock (PostgreSQL
    re-reads a row it had to wait for); None if it is gone."""
    row = (
        await conn.execute(
            select(
                LoginSession.id,
                LoginSession.user_id,
                LoginSession.expires_at,
                LoginSession.revoked_at.is_not(None),
                LoginSession.expires_at <= func.now(),
            )
            .where(
                LoginSession.id
                == select(RefreshToken.family_id)
                .where(RefreshToken.token_hash == token_hash)
                .scalar_subquery()
            )
            .with_for_update(of=LoginSession)
        )
    ).one_or_none()
    return SessionState(*row) if row else None


async def use_token(conn: AsyncConnection, token_hash: bytes) -> bool:
    """Mark the token used if it is unused and unexpired; whether it was."""
    used = await conn.scalar(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == token_hash,
            RefreshToken.used_at.is_(None),
            RefreshToken.expires_at > func.now(),
        )
        .values(used_at=func.now())
        .returning(RefreshToken.family_id)
    )
    return used is not None


async def was_used(conn: AsyncConnection, token_hash: bytes) -> bool:
    used_at = await conn.scalar(
        select(RefreshToken.used_at).where(RefreshToken.token_hash == token_hash)
    )
    return used_at is not None
