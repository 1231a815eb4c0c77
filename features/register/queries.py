"""Registration's statements: is the email taken, and insert unless it is (no race: ON CONFLICT)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.accounts.users import UserView
from shared.models import User


async def insert_user(conn: AsyncConnection, email: str, password_hash: bytes) -> UserView | None:
    """The new user, or None when the email is already registered (no race: ON CONFLICT)."""
    stmt = (
        pg_insert(User)
        .values(email=email, password_hash=password_hash)
        .on_conflict_do_nothing(index_elements=[User.email])
        .returning(User.id, User.email, User.created_at)
    )
    row = (await conn.execute(stmt)).one_or_none()
    return UserView(id=row.id, email=row.email, created_at=row.created_at) if row else None


async def email_taken(conn: AsyncConnection, email: str) -> bool:
    found = await conn.scalar(select(User.id).where(User.email == email))
    return found is not None
