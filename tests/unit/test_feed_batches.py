"""The feed's batch rule: per event, in the order the queue delivered them, what is appended."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from features.feed_order_events.job import planned_appends
from shared.messaging.events import (
    NewOrderEvent,
    OrderEvent,
    OrderProcessedEvent,
    OrderStatusChangedEvent,
)
from shared.orders.status import OrderStatus

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


class Row(NamedTuple):
    id: uuid.UUID
    user_id: int
    items: str
    total_price: Decimal
    status: str
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None


def row(user_id: int) -> Row:
    items = json.dumps([{"name": "A", "quantity": 1, "price": "1.00"}])
    later = CREATED + timedelta(hours=1)
    return Row(uuid.uuid4(), user_id, items, Decimal("1.00"), "PAID", CREATED, later, None)


def created(order: Row, user_id: int | None = None) -> NewOrderEvent:
    owner = order.user_id if user_id is None else user_id
    return NewOrderEvent(
        event_id=uuid.uuid4(),
        order_id=order.id,
        user_id=owner,
        total_price=order.total_price,
        created_at=CREATED,
    )


def processed(order: Row) -> OrderProcessedEvent:
    at = CREATED + timedelta(seconds=2)
    return OrderProcessedEvent(
        event_id=uuid.uuid4(),
        occurred_at=at,
        order_id=order.id,
        user_id=order.user_id,
        processed_at=at,
    )


def paid(order: Row) -> OrderStatusChangedEvent:
    return OrderStatusChangedEvent(
        event_id=uuid.uuid4(),
        occurred_at=order.updated_at,
        order_id=order.id,
        user_id=order.user_id,
        from_=OrderStatus.PENDING,
        to=OrderStatus.PAID,
        updated_at=order.updated_at,
    )


def data(append: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(append.data)
    return decoded


def test_a_batch_keeps_the_delivered_order_across_users_and_events() -> None:
    a, b = row(1), row(2)
    events: list[OrderEvent] = [created(a), created(b), processed(a), paid(a), processed(b)]
    appends = planned_appends([(e, type(e).__name__) for e in events], [b, a])
    assert [(x.event_id, x.user_id, x.event) for x in appends if x is not None] == [
        (str(e.event_id), e.user_id, type(e).__name__) for e in events
    ]
    first, _, then, last, _ = (data(x) for x in appends)
    assert (first["status"], first["processed_at"]) == ("PENDING", None)
    assert then["processed_at"] is not None
    assert last["status"] == "PAID"


def test_an_event_whose_order_is_gone_appends_nothing_and_keeps_the_others() -> None:
    a, gone = row(1), row(1)
    appends = planned_appends([(created(gone), "created"), (created(a), "created")], [a])
    assert appends[0] is None
    assert appends[1] is not None
    assert appends[1].user_id == 1


def test_an_order_read_for_another_user_is_not_appended_to_the_events_user() -> None:
    theirs = row(2)
    assert planned_appends([(created(theirs, user_id=1), "created")], [theirs]) == [None]
