"""The order's statements that several slices and the worker share: the view's columns, and
one order scoped to its owner. The only module of shared/orders that touches a database.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Text, bindparam, cast, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import Prepared
from shared.models import Order

# The columns every view is built from; select these and pass the row to `order_view`.
ORDER_VIEW_COLUMNS: tuple[Any, ...] = (
    Order.id,
    Order.user_id,
    # As JSON text: the view decodes it straight into its items in one pass (``order_view``),
    # not into dicts first (a list of 50 spent a fifth of its time there: BENCHMARKS.md).
    cast(Order.items, Text).label("items"),
    Order.total_price,
    Order.status,
    Order.created_at,
    Order.updated_at,
    Order.processed_at,
)


# What every write after the insert sets ``updated_at`` to (the cache keeps the view with the
# latest one). ``clock_timestamp()`` is read after the row lock is taken, so of two racing
# writes the later one is later; and it never goes back, even if the database's clock is
# behind the application's that stamped the insert.
NEXT_UPDATED_AT = func.greatest(
    func.clock_timestamp(), Order.updated_at + text("interval '1 microsecond'")
)

# Built and compiled once: the cold GET and PATCH run it per request.
_OWN_ORDER = Prepared(
    select(*ORDER_VIEW_COLUMNS).where(
        Order.id == bindparam("order_id"), Order.user_id == bindparam("user_id")
    )
)


async def find_own_order(conn: AsyncConnection, order_id: uuid.UUID, user_id: int) -> Any | None:
    """One order, scoped to its owner in the WHERE clause: another user's order is "none"."""
    return await _OWN_ORDER.one_or_none(conn, {"order_id": order_id, "user_id": user_id})
