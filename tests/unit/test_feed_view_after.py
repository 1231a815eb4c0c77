"""The order a stream event shows: the current view with the event's own fields laid over."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from features.feed_order_events.changes import view_after
from shared.messaging.events import (
    NewOrderEvent,
    OrderProcessedEvent,
    OrderStatusChangedEvent,
)
from shared.orders.items import OrderItem
from shared.orders.status import OrderStatus
from shared.orders.view import OrderView

CREATED = datetime(2026, 1, 1, tzinfo=UTC)
NOW = OrderView(
    id=uuid.uuid4(),
    user_id=7,
    items=[OrderItem(name="A", quantity=1, price=Decimal("1.00"))],
    total_price=Decimal("1.00"),
    status=OrderStatus.SHIPPED,
    created_at=CREATED,
    updated_at=CREATED + timedelta(hours=2),
    processed_at=CREATED + timedelta(seconds=2),
)


def test_created_shows_the_order_as_it_was_made() -> None:
    event = NewOrderEvent(
        event_id=uuid.uuid4(),
        order_id=NOW.id,
        user_id=7,
        total_price=Decimal("1.00"),
        created_at=CREATED,
    )
    view = view_after(NOW, event)
    assert (view.status, view.updated_at, view.processed_at) == (
        OrderStatus.PENDING,
        CREATED,
        None,
    )
    assert view.items == NOW.items


def test_a_status_change_shows_its_status_and_time() -> None:
    moved_at = CREATED + timedelta(hours=1)
    event = OrderStatusChangedEvent(
        event_id=uuid.uuid4(),
        occurred_at=moved_at,
        order_id=NOW.id,
        user_id=7,
        from_=OrderStatus.PENDING,
        to=OrderStatus.PAID,
        updated_at=moved_at,
    )
    view = view_after(NOW, event)
    assert (view.status, view.updated_at) == (OrderStatus.PAID, moved_at)


def test_processed_shows_its_time() -> None:
    at = CREATED + timedelta(seconds=3)
    event = OrderProcessedEvent(
        event_id=uuid.uuid4(), occurred_at=at, order_id=NOW.id, user_id=7, processed_at=at
    )
    assert view_after(NOW, event).processed_at == at
