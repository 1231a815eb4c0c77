"""Which session a refresh token belongs to, whatever its state."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.models import RefreshToken


async def family_of(conn: AsyncConnection, token_hash: bytes) -> uuid.UUID | None:
    return await conn.scalar(
        select(RefreshToken.family_id).where(RefreshToken.token_hash == token_hash)
    )
