"""The caller's own user row, as the API shows it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.accounts.users import UserView
from shared.models import User


async def find_user(conn: AsyncConnection, user_id: int) -> UserView | None:
    row = (
        await conn.execute(select(User.id, User.email, User.created_at).where(User.id == user_id))
    ).one_or_none()
    return UserView(id=row.id, email=row.email, created_at=row.created_at) if row else None
