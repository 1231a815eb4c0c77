"""Mark an order processed once, in one statement: the job's only round trip to PostgreSQL.

The statement also stages the ``order_processed`` event, in a CTE over the UPDATE's RETURNING:
only when this run set ``processed_at``; committed or rolled back with it.

Built and compiled once (``shared.db.Prepared``): the job runs it per order.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    LargeBinary,
    bindparam,
    exists,
    false,
    func,
    literal,
    null,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import Prepared
from shared.messaging.events import ORDER_PROCESSED
from shared.messaging.outbox import (
    OutboxMessage,
    change_values,
    staged_message,
    staging_change,
    utc_text,
)
from shared.models import Order
from shared.orders.queries import NEXT_UPDATED_AT, ORDER_VIEW_COLUMNS

_ORDER_ID = bindparam("order_id", type_=Order.id.type)

# The order, locked, as it is: whether it is processed is read here, not in the UPDATE's WHERE.
# ``processed_at IS NULL`` on ``orders`` itself would let the planner scan the reconciler's
# partial index (ix_orders_unprocessed) instead of the primary key: its statistics say it is
# all but empty (orders are processed within seconds), but it holds every unprocessed order
# and, until a vacuum, an entry for each one processed since, so every job read thousands of
# entries (BENCHMARKS.md, issue 22) and a backlog made each job slower by its size.
# FOR UPDATE: a racing run waits here and then reads the row as that run left it.
_before = (
    select(Order.id, Order.processed_at)
    .where(Order.id == _ORDER_ID)
    .with_for_update()
    .cte("before")
)
# Sets processed_at only if it was unset; ``NEXT_UPDATED_AT`` orders this write against a
# racing PATCH. When it changed nothing, the second branch reads the order as it is (the
# statement's snapshot), so one round trip answers both "did I do it?" and "what is it now?".
# A single statement is atomic: it runs on an autocommit connection, with no BEGIN and COMMIT
# of its own.
_done = (
    update(Order)
    .where(Order.id == _before.c.id, _before.c.processed_at.is_(None))
    .values(processed_at=func.now(), updated_at=NEXT_UPDATED_AT)
    .returning(*ORDER_VIEW_COLUMNS)
    .cte("done")
)
_staged = staging_change(ORDER_PROCESSED, _done, processed_at=utc_text(_done.c.processed_at)).cte(
    "staged"
)
MARK_PROCESSED = Prepared(
    select(*_done.c, true().label("processed_now"), _staged.c.payload)
    .join_from(_done, _staged, _staged.c.order_id == _done.c.id)
    .union_all(
        select(
            *ORDER_VIEW_COLUMNS,
            false().label("processed_now"),
            null().cast(LargeBinary).label("payload"),
        ).where(Order.id == _ORDER_ID, ~exists(select(literal(1)).select_from(_done)))
    )
)


async def mark_processed_once(
    conn: AsyncConnection, order_id: uuid.UUID
) -> tuple[Any, OutboxMessage | None] | None:
    """The order's view plus ``processed_now`` (True if this call set ``processed_at``), with
    the event it staged then (for the relay, after the commit); None if the order does not
    exist."""
    params = {"order_id": order_id, **change_values()}
    row = await MARK_PROCESSED.one_or_none(conn, params)  # the view's columns and 2 more
    if row is None:
        return None
    if not row.processed_now:
        return row, None
    return row, staged_message(ORDER_PROCESSED, order_id, params, row.payload)
