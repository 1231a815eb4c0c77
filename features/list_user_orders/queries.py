"""A page of one user's orders, newest first, read off ix_orders_user_id_created_at."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Order
from shared.orders import ORDER_VIEW_COLUMNS


async def list_orders(
    session: AsyncSession, user_id: int, limit: int, offset: int
) -> Sequence[Row[Any]]:
    stmt = (
        select(*ORDER_VIEW_COLUMNS)
        .where(Order.user_id == user_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return (await session.execute(stmt)).all()
