"""The status change as one conditional UPDATE: it only matches rows the machine allows."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, func, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Order, OrderStatus
from shared.orders import ORDER_VIEW_COLUMNS


async def move_status(
    session: AsyncSession,
    order_id: uuid.UUID,
    user_id: int,
    target: OrderStatus,
    from_any_of: list[OrderStatus],
) -> Row[Any] | None:
    """The updated row, or None when the order is missing, not the user's, or may not move.

    ``clock_timestamp()`` (not ``now()``) is read after the row lock is taken, so of two
    racing updates the later one always has the later ``updated_at``: the cache's version.
    """
    stmt = (
        update(Order)
        .where(Order.id == order_id, Order.user_id == user_id, Order.status.in_(from_any_of))
        .values(status=target, updated_at=func.clock_timestamp())
        .returning(*ORDER_VIEW_COLUMNS)
    )
    return (await session.execute(stmt)).one_or_none()
