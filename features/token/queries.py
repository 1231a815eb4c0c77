"""Look up the credentials for a login."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.models import User


async def find_credentials(conn: AsyncConnection, email: str) -> tuple[int, bytes] | None:
    if "\x00" in email:
        return None  # registration refuses NUL, and PostgreSQL would reject it as a parameter
    row = (
        await conn.execute(select(User.id, User.password_hash).where(User.email == email))
    ).one_or_none()
    return (row.id, row.password_hash) if row else None


async def store_password_hash(conn: AsyncConnection, user_id: int, old: bytes, new: bytes) -> None:
    """Replace the hash, unless it changed meanwhile (a concurrent login rehashed it first)."""
    await conn.execute(
        update(User).where(User.id == user_id, User.password_hash == old).values(password_hash=new)
    )
