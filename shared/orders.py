"""The order as the API shows it, defined once for every slice, the cache and the worker."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared.models import Order, OrderStatus

MAX_TOTAL = Decimal("99999999.99")  # orders.total_price is Numeric(10, 2)
CENT = Decimal("0.01")

Money = Annotated[Decimal, msgspec.Meta(examples=[Decimal("100.50")])]


class OrderItem(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    quantity: int
    price: Money


class OrderView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    user_id: int
    items: list[OrderItem]
    total_price: Money
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None


# The columns every view is built from; select these and pass the row to `order_view`.
ORDER_VIEW_COLUMNS = (
    Order.id,
    Order.user_id,
    Order.items,
    Order.total_price,
    Order.status,
    Order.created_at,
    Order.updated_at,
    Order.processed_at,
)


def order_view(row: Row[Any] | Order) -> OrderView:
    """Build the public view from a row; money keeps exactly two places."""
    return OrderView(
        id=row.id,
        user_id=row.user_id,
        items=msgspec.convert(row.items, list[OrderItem], strict=False),
        total_price=Decimal(row.total_price).quantize(CENT),
        status=OrderStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        processed_at=row.processed_at,
    )


def items_to_json(items: list[OrderItem]) -> list[dict[str, Any]]:
    """Items as stored in JSONB: prices as strings, so no float ever touches the money."""
    return [
        {"name": item.name, "quantity": item.quantity, "price": str(item.price.quantize(CENT))}
        for item in items
    ]


async def find_own_order(
    session: AsyncSession | AsyncConnection, order_id: uuid.UUID, user_id: int
) -> Row[Any] | None:
    """One order, scoped to its owner in the WHERE clause: another user's order is "none"."""
    stmt = select(*ORDER_VIEW_COLUMNS).where(Order.id == order_id, Order.user_id == user_id)
    return (await session.execute(stmt)).one_or_none()
