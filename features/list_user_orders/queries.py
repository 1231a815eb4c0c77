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

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, Select, any_, bindparam, cast, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from features.list_user_orders.pages import ALL_ORDERS, OrderFilter, Position
from shared.db import Prepared
from shared.models import Order
from shared.orders.queries import ORDER_VIEW_COLUMNS


@functools.cache
def _shape(
    after: bool, statuses: bool, created_from: bool, created_to: bool, offset: bool
) -> Select[Any]:
    """The page's SELECT for one combination of the optional clauses, every value a named
    parameter (``page_params``): at most 32 shapes, each built and compiled once."""
    statement = select(*ORDER_VIEW_COLUMNS).where(Order.user_id == bindparam("user_id"))
    if after:
        # A row comparison: the index range starts right after the position.
        statement = statement.where(
            tuple_(Order.created_at, Order.id)
            < tuple_(
                bindparam("after_at", type_=Order.created_at.type),
                bindparam("after_id", type_=Order.id.type),
            )
        )
    if statuses:
        # An array, not an expanding IN list, so the shape compiles once whatever the list;
        # cast, so that its literal form (``just explain-orders``) is typed as well.
        statuses_type = ARRAY(Order.status.type)
        statement = statement.where(
            Order.status == any_(cast(bindparam("statuses", type_=statuses_type), statuses_type))
        )
    if created_from:
        statement = statement.where(Order.created_at >= bindparam("created_from"))
    if created_to:
        statement = statement.where(Order.created_at < bindparam("created_to"))
    statement = statement.order_by(Order.created_at.desc(), Order.id.desc()).limit(
        bindparam("limit", type_=Integer)
    )
    return statement.offset(bindparam("offset", type_=Integer)) if offset else statement


def _key(offset: int, after: Position | None, where: OrderFilter) -> tuple[bool, ...]:
    return (
        after is not None,
        bool(where.statuses),
        where.created_from is not None,
        where.created_to is not None,
        bool(offset),
    )


def _params(
    user_id: int, limit: int, offset: int, after: Position | None, where: OrderFilter
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "limit": limit,
        "offset": offset,
        "after_at": after.created_at if after else None,
        "after_id": after.id if after else None,
        "statuses": list(where.statuses),
        "created_from": where.created_from,
        "created_to": where.created_to,
    }


@functools.cache
def _prepared(key: tuple[bool, ...]) -> Prepared:
    return Prepared(_shape(*key))


def page_statement(
    user_id: int,
    limit: int,
    *,
    offset: int = 0,
    after: Position | None = None,
    where: OrderFilter = ALL_ORDERS,
) -> Select[Any]:
    """The page's SELECT with its values bound (``just explain-orders`` plans it);
    ``limit`` rows at most (ask one more to learn if there are more)."""
    key = _key(offset, after, where)
    values = _params(user_id, limit, offset, after, where)
    return _shape(*key).params({name: values[name] for name in _names(key)})


@functools.cache
def _names(key: tuple[bool, ...]) -> frozenset[str]:
    return frozenset(_shape(*key).compile().params)


async def list_orders(
    conn: AsyncConnection,
    user_id: int,
    limit: int,
    *,
    offset: int = 0,
    after: Position | None = None,
    where: OrderFilter = ALL_ORDERS,
) -> Sequence[Any]:
    """The page's rows (the view's columns), newest first."""
    key = _key(offset, after, where)
    return await _prepared(key).all(conn, _params(user_id, limit, offset, after, where))
