"""A page of one user's orders, newest first, read off ix_orders_user_id_created_at."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, Row, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.models import Order
from shared.orders.queries import ORDER_VIEW_COLUMNS

# Built once; each request binds its user and page.
_PAGE = (
    select(*ORDER_VIEW_COLUMNS)
    .where(Order.user_id == bindparam("user_id"))
    .order_by(Order.created_at.desc(), Order.id.desc())
    .limit(bindparam("limit", type_=Integer))
    .offset(bindparam("offset", type_=Integer))
)


async def list_orders(
    conn: AsyncConnection, user_id: int, limit: int, offset: int
) -> Sequence[Row[Any]]:
    params = {"user_id": user_id, "limit": limit, "offset": offset}
    return (await conn.execute(_PAGE, params)).all()
