"""The order's public view, built from plain stored values: no row, no session, no app."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from features.create_order.queries import items_to_json
from shared.orders.items import OrderItem
from shared.orders.status import OrderStatus
from shared.orders.view import OrderView, order_view

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Stored:
    """An order as PostgreSQL hands it back: items as JSONB, money as Numeric, status as text."""

    id: uuid.UUID
    user_id: int
    items: Any
    total_price: Decimal
    status: str
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None = None


def stored(**changes: Any) -> Stored:
    values: dict[str, Any] = {
        "id": uuid.UUID(int=1),
        "user_id": 7,
        "items": [{"name": "Item 1", "quantity": 2, "price": "100.50"}],
        "total_price": Decimal("201"),
        "status": "PENDING",
        "created_at": CREATED,
        "updated_at": CREATED,
    }
    return Stored(**{**values, **changes})


def test_the_view_reads_as_the_contract_shows_an_order() -> None:
    shown = msgspec.json.decode(msgspec.json.encode(order_view(stored())))
    assert shown == {
        "id": "00000000-0000-0000-0000-000000000001",
        "user_id": 7,
        "items": [{"name": "Item 1", "quantity": 2, "price": "100.50"}],
        "total_price": "201.00",
        "status": "PENDING",
        "created_at": "2026-01-02T03:04:05Z",
        "updated_at": "2026-01-02T03:04:05Z",
        "processed_at": None,
    }


@pytest.mark.parametrize("total", [Decimal("201"), Decimal("201.0"), Decimal("201.000"), 201])
def test_the_total_always_shows_two_places(total: Any) -> None:
    assert str(order_view(stored(total_price=total)).total_price) == "201.00"


@pytest.mark.parametrize("price", ["100.50", 100.5, "1.005e2"])
def test_stored_item_prices_become_decimals(price: Any) -> None:
    view = order_view(stored(items=[{"name": "a", "quantity": 1, "price": price}]))
    assert view.items == [OrderItem(name="a", quantity=1, price=Decimal("100.50"))]
    assert type(view.items[0].price) is Decimal


@pytest.mark.parametrize("status", list(OrderStatus))
def test_the_status_text_becomes_the_enum(status: OrderStatus) -> None:
    assert order_view(stored(status=status.value)).status is status


def test_a_status_the_machine_does_not_know_is_an_error_not_a_view() -> None:
    with pytest.raises(ValueError, match="DELIVERED"):
        order_view(stored(status="DELIVERED"))


def test_items_are_stored_with_prices_as_two_place_strings_and_read_back_equal() -> None:
    items = [
        OrderItem(name="a", quantity=3, price=Decimal("0.1")),
        OrderItem(name="b", quantity=1, price=Decimal("1E+1")),
    ]
    as_json = items_to_json(items)
    assert as_json == [
        {"name": "a", "quantity": 3, "price": "0.10"},
        {"name": "b", "quantity": 1, "price": "10.00"},
    ]
    assert order_view(stored(items=as_json)).items == items


def test_the_view_is_immutable() -> None:
    view = order_view(stored())
    assert isinstance(view, OrderView)
    with pytest.raises(AttributeError):
        view.status = OrderStatus.PAID  # type: ignore[misc]


@pytest.mark.parametrize("price", ['"100.50"', "100.5", '"1.005e2"'])
def test_items_as_the_json_text_postgresql_sends_read_back_equal(price: str) -> None:
    text = f'[{{"name": "a", "price": {price}, "quantity": 1}}]'
    for stored_items in (text, text.encode()):
        view = order_view(stored(items=stored_items))
        assert view.items == [OrderItem(name="a", quantity=1, price=Decimal("100.50"))]
        assert type(view.items[0].price) is Decimal
