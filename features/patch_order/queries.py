"""The status change as one conditional UPDATE: it only matches rows the machine allows, and
stages its ``order_status_changed`` event in the same statement."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BindParameter, any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import Prepared
from shared.messaging.events import ORDER_STATUS_CHANGED
from shared.messaging.outbox import (
    OutboxMessage,
    change_values,
    staged_message,
    staging_change,
    utc_text,
)
from shared.models import Order, OrderStatus
from shared.orders.queries import NEXT_UPDATED_AT, ORDER_VIEW_COLUMNS

_ORDER_ID = bindparam("order_id", type_=Order.id.type)
# An array, not an expanding IN list: the statement is compiled once (``Prepared``).
_SOURCES: BindParameter[Any] = bindparam("sources", type_=ARRAY(Order.status.type))

# The row as it was, locked: its status is the event's ``from`` (RETURNING shows only the new
# values). FOR UPDATE re-reads a row a racing PATCH changed, so ``from`` is what this one moved.
_before = (
    select(Order.id, Order.status)
    .where(
        Order.id == _ORDER_ID,
        Order.user_id == bindparam("owner_id"),  # "user_id" is the SET clause's own name
        Order.status == any_(_SOURCES),
    )
    .with_for_update()
    .cte("before")
)
# Built once; each request binds its order, owner, target, allowed sources and event id. The
# event is staged by a CTE of the UPDATE: only when it moved the status (a no-op or refused
# move matches no row, so stages nothing), and it commits or rolls back with it.
_moved = (
    update(Order)
    .where(Order.id == _before.c.id, Order.status == any_(_SOURCES))
    .values(status=bindparam("target"), updated_at=NEXT_UPDATED_AT)
    .returning(*ORDER_VIEW_COLUMNS, _before.c.status.label("from_status"))
    .cte("moved")
)
_staged = staging_change(
    ORDER_STATUS_CHANGED,
    _moved,
    **{"from": _moved.c.from_status},
    to=_moved.c.status,
    updated_at=utc_text(_moved.c.updated_at),
).cte("staged")
_MOVE = Prepared(
    select(*(_moved.c[column.key] for column in ORDER_VIEW_COLUMNS), _staged.c.payload).join_from(
        _moved, _staged, _staged.c.order_id == _moved.c.id
    )
)


async def move_status(
    conn: AsyncConnection,
    order_id: uuid.UUID,
    user_id: int,
    target: OrderStatus,
    from_any_of: list[OrderStatus],
) -> tuple[Any, OutboxMessage] | None:
    """The updated row and its staged event (for the relay, after the commit); None when the
    order is missing, not the user's, or may not move."""
    params = {
        "order_id": order_id,
        "owner_id": user_id,
        "target": target,
        "sources": from_any_of,
        **change_values(),
    }
    row = await _MOVE.one_or_none(conn, params)  # the view's columns and the payload
    if row is None:
        return None
    return row, staged_message(ORDER_STATUS_CHANGED, order_id, params, row.payload)
