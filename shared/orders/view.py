"""The order as the API shows it, defined once for every slice, the cache and the worker."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from shared.orders.items import Money, OrderItem
from shared.orders.money import CENT
from shared.orders.status import OrderStatus


class OrderView(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    user_id: int
    items: list[OrderItem]
    total_price: Money
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None


# The README walk-through's order, as the OpenAPI document shows it (shared.http.openapi).
ORDER_EXAMPLE = {
    "id": "0f8c4a5e-3b7d-4c2a-9e61-5d2b8f1a7c34",
    "user_id": 1,
    "items": [{"name": "Item 1", "quantity": 2, "price": "100.50"}],
    "total_price": "201.00",
    "status": "PENDING",
    "created_at": "2026-01-05T09:31:00Z",
    "updated_at": "2026-01-05T09:31:00Z",
    "processed_at": None,
}


class OrderRecord(Protocol):
    """What a view is built from: a selected row, an ORM object, any object with these fields.

    ``items`` is the stored JSON, as its text (what ``ORDER_VIEW_COLUMNS`` selects) or decoded
    (prices as strings or numbers); ``status`` its enum or text.
    """

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def user_id(self) -> int: ...
    @property
    def items(self) -> Any: ...
    @property
    def total_price(self) -> Decimal: ...
    @property
    def status(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def processed_at(self) -> datetime | None: ...


_items_decoder = msgspec.json.Decoder(list[OrderItem], strict=False)


def _items(stored: Any) -> list[OrderItem]:
    if isinstance(stored, str | bytes):
        return _items_decoder.decode(stored)  # one pass, from the text PostgreSQL sent
    return msgspec.convert(stored, list[OrderItem], strict=False)


def order_view(record: OrderRecord) -> OrderView:
    """Build the public view from stored values; money keeps exactly two places."""
    return OrderView(
        id=record.id,
        user_id=record.user_id,
        items=_items(record.items),
        total_price=Decimal(record.total_price).quantize(CENT),
        status=OrderStatus(record.status),
        created_at=record.created_at,
        updated_at=record.updated_at,
        processed_at=record.processed_at,
    )
