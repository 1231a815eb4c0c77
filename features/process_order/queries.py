"""Mark an order processed once, in one statement: the job's only round trip to PostgreSQL.

Built once at import (SQLAlchemy caches its compiled form): the job runs it per order.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import Row, bindparam, exists, false, func, literal, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.models import Order
from shared.orders.queries import NEXT_UPDATED_AT, ORDER_VIEW_COLUMNS

_ORDER_ID = bindparam("order_id", type_=Order.id.type)

# The UPDATE sets processed_at only if it is unset; ``NEXT_UPDATED_AT`` orders this write
# against a racing PATCH. When it changed nothing, the second branch reads the order as it
# is (the statement's snapshot), so one round trip answers both "did I do it?" and "what is
# it now?". A single statement is atomic: it runs on an autocommit connection, with no
# BEGIN and COMMIT of its own.
_done = (
    update(Order)
    .where(Order.id == _ORDER_ID, Order.processed_at.is_(None))
    .values(processed_at=func.now(), updated_at=NEXT_UPDATED_AT)
    .returning(*ORDER_VIEW_COLUMNS)
    .cte("done")
)
MARK_PROCESSED = select(*_done.c, true().label("processed_now")).union_all(
    select(*ORDER_VIEW_COLUMNS, false().label("processed_now")).where(
        Order.id == _ORDER_ID, ~exists(select(literal(1)).select_from(_done))
    )
)


async def mark_processed_once(conn: AsyncConnection, order_id: uuid.UUID) -> Row[Any] | None:
    """The order's view plus ``processed_now`` (True if this call set ``processed_at``);
    None if the order does not exist."""
    row = (await conn.execute(MARK_PROCESSED, {"order_id": order_id})).one_or_none()
    return cast("Row[Any] | None", row)  # a UNION's row type is a 9-tuple: the same row
