"""Which session a refresh token belongs to, whatever its state."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import RefreshToken


async def family_of(db_session: AsyncSession, token_hash: bytes) -> uuid.UUID | None:
    return await db_session.scalar(
        select(RefreshToken.family_id).where(RefreshToken.token_hash == token_hash)
    )
