"""Statements for creating an order: the insert, and the Idempotency-Key look-ups."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Row, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import Prepared
from shared.messaging.events import NewOrderEvent
from shared.messaging.outbox import OutboxMessage, staged_values, staging
from shared.models import Order, OrderStatus
from shared.orders.items import OrderItem
from shared.orders.money import CENT
from shared.orders.queries import ORDER_VIEW_COLUMNS

IDEMPOTENCY_WINDOW = text("interval '24 hours'")


def items_to_json(items: list[OrderItem]) -> list[dict[str, Any]]:
    """Items as stored in JSONB: prices as strings, so no float ever touches the money."""
    return [
        {"name": item.name, "quantity": item.quantity, "price": str(item.price.quantize(CENT))}
        for item in items
    ]


# The order and its outbox row in one statement, built once: an INSERT ... RETURNING whose CTE
# stages the event only if the order went in (ON CONFLICT leaves both out). One statement is
# atomic alone, so it needs no transaction of its own: one round trip to PostgreSQL.
# ``created_at`` is the application's (the event carries it, so it is known before the
# insert); ``updated_at`` starts equal to it, and every later write moves it forward from
# whichever is later, the database's clock or it (shared.orders.NEXT_UPDATED_AT).
_new_order = (
    insert(Order)
    .values(
        id=bindparam("new_id", type_=Order.id.type),
        user_id=bindparam("owner_id", type_=Order.user_id.type),
        items=bindparam("new_items", type_=Order.items.type),
        total_price=bindparam("new_total", type_=Order.total_price.type),
        status=OrderStatus.PENDING,
        created_at=bindparam("new_at", type_=Order.created_at.type),
        updated_at=bindparam("new_at", type_=Order.updated_at.type),
        idempotency_key=bindparam("new_key", type_=Order.idempotency_key.type),
        request_fingerprint=bindparam("new_fingerprint", type_=Order.request_fingerprint.type),
    )
    .on_conflict_do_nothing(
        index_elements=[Order.user_id, Order.idempotency_key],
        index_where=Order.idempotency_key.is_not(None),
    )
    .returning(*ORDER_VIEW_COLUMNS)
    .cte("inserted")
)
_INSERT_ORDER = Prepared(select(*_new_order.c).add_cte(staging(_new_order.c.id).cte("staged")))


async def insert_order(
    conn: AsyncConnection,
    event: NewOrderEvent,
    message: OutboxMessage,
    *,
    items: list[OrderItem],
    idempotency_key: str | None,
    fingerprint: bytes | None,
) -> Any | None:
    """Insert the order ``event`` announces (its id, owner, total and time) and stage the event
    (``message``: ``event`` encoded, as the relay publishes it);
    the new order's row, or None when the same user's same key won the race (ON CONFLICT: no
    order, no event)."""
    values = {
        "new_id": event.order_id,
        "owner_id": event.user_id,
        "new_items": items_to_json(items),
        "new_total": event.total_price,
        "new_at": event.created_at,
        "new_key": idempotency_key,
        "new_fingerprint": fingerprint,
        **staged_values(message),
    }
    return await _INSERT_ORDER.one_or_none(conn, values)


async def find_by_idempotency_key(
    conn: AsyncConnection, user_id: int, key: str
) -> tuple[Row[Any], bytes | None] | None:
    """The order this user made with this key in the last 24 h, with its fingerprint."""
    row = (
        await conn.execute(
            select(*ORDER_VIEW_COLUMNS, Order.request_fingerprint).where(
                Order.user_id == user_id,
                Order.idempotency_key == key,
                Order.created_at > func.now() - IDEMPOTENCY_WINDOW,
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return cast("Row[Any]", row), row.request_fingerprint  # the view's row, one column more


async def release_expired_key(conn: AsyncConnection, user_id: int, key: str) -> None:
    """A key older than 24 h may be used again: detach it from its old order."""
    await conn.execute(
        update(Order)
        .where(
            Order.user_id == user_id,
            Order.idempotency_key == key,
            Order.created_at <= func.now() - IDEMPOTENCY_WINDOW,
        )
        .values(idempotency_key=None, request_fingerprint=None)
    )
