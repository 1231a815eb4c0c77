"""Statements for creating an order: the insert, and the Idempotency-Key look-ups."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Row, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.models import Order, OrderStatus
from shared.orders import CENT, ORDER_VIEW_COLUMNS, OrderItem

IDEMPOTENCY_WINDOW = text("interval '24 hours'")


def items_to_json(items: list[OrderItem]) -> list[dict[str, Any]]:
    """Items as stored in JSONB: prices as strings, so no float ever touches the money."""
    return [
        {"name": item.name, "quantity": item.quantity, "price": str(item.price.quantize(CENT))}
        for item in items
    ]


# Built once: each request only binds its values (the columns named in ``insert_order``).
_INSERT_ORDER = (
    insert(Order)
    .on_conflict_do_nothing(
        index_elements=[Order.user_id, Order.idempotency_key],
        index_where=Order.idempotency_key.is_not(None),
    )
    .returning(*ORDER_VIEW_COLUMNS)
)


async def insert_order(
    conn: AsyncConnection,
    *,
    user_id: int,
    items: list[OrderItem],
    total: Decimal,
    idempotency_key: str | None,
    fingerprint: bytes | None,
) -> Row[Any] | None:
    """The new order's row; None when the same user's same key won the race (ON CONFLICT)."""
    values = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "items": items_to_json(items),
        "total_price": total,
        "status": OrderStatus.PENDING,
        "idempotency_key": idempotency_key,
        "request_fingerprint": fingerprint,
    }
    return (await conn.execute(_INSERT_ORDER, values)).one_or_none()


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
