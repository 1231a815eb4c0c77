"""The status change as one conditional UPDATE: it only matches rows the machine allows."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.models import Order, OrderStatus
from shared.orders.queries import NEXT_UPDATED_AT, ORDER_VIEW_COLUMNS

# Built once; each request binds its order, owner, target and allowed sources.
_MOVE = (
    update(Order)
    .where(
        Order.id == bindparam("order_id"),
        Order.user_id == bindparam("owner_id"),  # "user_id" is the SET clause's own name
        Order.status.in_(bindparam("sources", expanding=True)),
    )
    .values(status=bindparam("target"), updated_at=NEXT_UPDATED_AT)
    .returning(*ORDER_VIEW_COLUMNS)
)


async def move_status(
    conn: AsyncConnection,
    order_id: uuid.UUID,
    user_id: int,
    target: OrderStatus,
    from_any_of: list[OrderStatus],
) -> Row[Any] | None:
    """The updated row, or None when the order is missing, not the user's, or may not move."""
    params = {"order_id": order_id, "owner_id": user_id, "target": target, "sources": from_any_of}
    return (await conn.execute(_MOVE, params)).one_or_none()
