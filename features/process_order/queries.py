"""Mark an order processed once: a conditional UPDATE, then a plain read when it did nothing."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.models import Order
from shared.orders import ORDER_VIEW_COLUMNS


async def set_processed(conn: AsyncConnection, order_id: uuid.UUID) -> Row[Any] | None:
    """The order's view if this call set ``processed_at``; None if it was set already (or the
    order is missing). ``clock_timestamp()`` orders this write against a racing PATCH."""
    return (
        await conn.execute(
            update(Order)
            .where(Order.id == order_id, Order.processed_at.is_(None))
            .values(processed_at=func.now(), updated_at=func.clock_timestamp())
            .returning(*ORDER_VIEW_COLUMNS)
        )
    ).one_or_none()


async def read_order(conn: AsyncConnection, order_id: uuid.UUID) -> Row[Any] | None:
    return (
        await conn.execute(select(*ORDER_VIEW_COLUMNS).where(Order.id == order_id))
    ).one_or_none()
