"""The refresh grant's statements: use a token at most once, and recognise a used one."""

from __future__ import annotations

import uuid

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import RefreshToken


async def use_token(db_session: AsyncSession, token_hash: bytes) -> Row[uuid.UUID, int] | None:
    """Mark a live token used; its ``family_id`` and ``user_id``, or None if it is not live.

    One conditional UPDATE: of two concurrent refreshes with one token, the second waits for
    the first's row lock, then finds ``used_at`` set and changes nothing. Exactly one wins.
    """
    return (
        await db_session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == token_hash,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > func.now(),
            )
            .values(used_at=func.now())
            .returning(RefreshToken.family_id, RefreshToken.user_id)
        )
    ).one_or_none()


async def replayed_family(db_session: AsyncSession, token_hash: bytes) -> uuid.UUID | None:
    """The session of a token that was already used and is not revoked yet: a replay."""
    return await db_session.scalar(
        select(RefreshToken.family_id).where(
            RefreshToken.token_hash == token_hash,
            RefreshToken.used_at.is_not(None),
            RefreshToken.revoked_at.is_(None),
        )
    )
