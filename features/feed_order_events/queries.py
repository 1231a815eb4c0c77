"""The feed's one read per batch: the orders of all the events that arrived together.

Scoped to the owners in the WHERE clause (each id paired with its event's user, as
``find_own_order`` does for one), so another user's order reads as gone. Built and compiled
once (``shared.db.Prepared``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, Uuid, bindparam, func, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import Prepared
from shared.models import Order
from shared.orders.queries import ORDER_VIEW_COLUMNS

_pairs = (
    func.unnest(
        bindparam("order_ids", type_=ARRAY(Uuid())),
        bindparam("user_ids", type_=ARRAY(Integer())),
    )
    .table_valued("order_id", "user_id")
    .render_derived()
)
_OWN_ORDERS = Prepared(
    select(*ORDER_VIEW_COLUMNS).where(
        tuple_(Order.id, Order.user_id).in_(select(_pairs.c.order_id, _pairs.c.user_id))
    )
)


async def find_own_orders(
    conn: AsyncConnection, owned: Sequence[tuple[uuid.UUID, int]]
) -> list[Any]:
    """The orders of these (order id, user id) pairs that exist and belong to that user."""
    params = {"order_ids": [o for o, _ in owned], "user_ids": [u for _, u in owned]}
    return list(await _OWN_ORDERS.all(conn, params))
