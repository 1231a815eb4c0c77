"""Deleting an account: its credentials, then the user, their orders and unsent events.

The user's sessions, and with them their refresh tokens, go with the row (ON DELETE
CASCADE); the row's deletion fires ``NOTIFY user_deleted`` (migration 0001), which every API
process listens for.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.models import Order, OutboxEvent, User


async def credentials_of(conn: AsyncConnection, user_id: int) -> tuple[str, bytes] | None:
    """The user's email (whose password budget a guess spends) and password hash."""
    row = (
        await conn.execute(select(User.email, User.password_hash).where(User.id == user_id))
    ).one_or_none()
    return (row.email, row.password_hash) if row else None


async def delete_user(conn: AsyncConnection, user_id: int) -> list[uuid.UUID] | None:
    """Delete the user and everything of theirs (not committed); their order ids, or None if
    the user is gone already.

    The user's row is locked first: an order being created meanwhile waits for its foreign
    key check and then fails, so no order escapes the list (and its cache entry, the purge).
    A login or refresh holds the row FOR KEY SHARE from its start (``shared/accounts/sessions.py``):
    the deletion waits for one in flight, and one arriving later waits for the deletion,
    then finds no user: 401, never a foreign-key error or a deadlock.
    Unsent ``new_order`` events of the orders are dropped: nothing is published about an
    account that is gone. Events already sent reach the worker, which finds no order.
    """
    locked = await conn.scalar(select(User.id).where(User.id == user_id).with_for_update())
    if locked is None:
        return None
    order_ids = list(
        await conn.scalars(delete(Order).where(Order.user_id == user_id).returning(Order.id))
    )
    if order_ids:
        await conn.execute(
            delete(OutboxEvent).where(
                OutboxEvent.order_id.in_(order_ids), OutboxEvent.sent_at.is_(None)
            )
        )
    await conn.execute(delete(User).where(User.id == user_id))
    return order_ids
