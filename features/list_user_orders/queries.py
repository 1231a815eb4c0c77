"""A page of one user's orders, newest first, read off ix_orders_user_id_created_at.

Every shape of the query (by offset or after a position; with or without the status and
date filters) is a range scan of that index, (user_id, created_at DESC, id DESC): the user
and the position bound the range, the dates narrow it, the statuses are a filter on the rows
it reads, and the order is the index's own, so there is no sort at any depth
(tests/features/test_list_user_orders.py shows the plans; ``just explain-orders``). A second
index led by status would serve one status alone but not several at once (their pages
would need a merge and a sort), so this one serves all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from features.list_user_orders.pages import ALL_ORDERS, OrderFilter, Position
from shared.models import Order
from shared.orders.queries import ORDER_VIEW_COLUMNS


def page_statement(
    user_id: int,
    limit: int,
    *,
    offset: int = 0,
    after: Position | None = None,
    where: OrderFilter = ALL_ORDERS,
) -> Select[Any]:
    """The page's SELECT; ``limit`` rows at most (ask one more to learn if there are more)."""
    statement = select(*ORDER_VIEW_COLUMNS).where(Order.user_id == user_id)
    if after is not None:
        # A row comparison: the index range starts right after the position.
        statement = statement.where(
            tuple_(Order.created_at, Order.id) < tuple_(after.created_at, after.id)
        )
    if where.statuses:
        statement = statement.where(Order.status.in_(where.statuses))
    if where.created_from is not None:
        statement = statement.where(Order.created_at >= where.created_from)
    if where.created_to is not None:
        statement = statement.where(Order.created_at < where.created_to)
    statement = statement.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit)
    return statement.offset(offset) if offset else statement


async def list_orders(
    conn: AsyncConnection,
    user_id: int,
    limit: int,
    *,
    offset: int = 0,
    after: Position | None = None,
    where: OrderFilter = ALL_ORDERS,
) -> Sequence[Row[Any]]:
    statement = page_statement(user_id, limit, offset=offset, after=after, where=where)
    result = await conn.execute(statement)
    rows: Sequence[Row[Any]] = result.all()
    return rows
