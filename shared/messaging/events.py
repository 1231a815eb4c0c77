"""The order's events on the bus: their names (= routing keys), schemas and JSON wire format.

``new_order``: POST /orders builds it (``new_order_event``) and stages it in the outbox with
the order (``shared.messaging.outbox``), the consumer decodes it; both read this one definition.

``order_status_changed`` and ``order_processed``: the database builds their bodies in the
statement that makes the change (features/patch_order, features/process_order), since only it
knows the status moved from and the timestamps it set. The Structs below are their schema for
consumers, for the AsyncAPI document (features/docs/asyncapi.json, checked against them by
tests/features/test_asyncapi.py) and for the tests that decode what reaches the bus.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Final, Literal, get_args

import msgspec

from shared.orders.status import OrderStatus

NewOrderType = Literal["new_order"]
# The event's name, written once (in the type above): its ``type`` field, its routing key
# (shared.bus) and its outbox rows' ``event_type``.
NEW_ORDER: Final[NewOrderType] = get_args(NewOrderType)[0]


class NewOrderEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Version 1 of the event. Add fields with defaults; a breaking change is a new version."""

    version: Literal[1] = 1
    type: NewOrderType = NEW_ORDER
    event_id: uuid.UUID
    order_id: uuid.UUID
    user_id: int
    total_price: Decimal
    created_at: datetime


def new_order_event(*, user_id: int, total_price: Decimal) -> NewOrderEvent:
    """The event of an order about to be made: the order takes its id and creation time from
    it (POST /orders builds it, then inserts both), so the two always agree."""
    return NewOrderEvent(
        event_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        user_id=user_id,
        total_price=total_price,
        created_at=datetime.now(UTC),
    )


OrderStatusChangedType = Literal["order_status_changed"]
ORDER_STATUS_CHANGED: Final[OrderStatusChangedType] = get_args(OrderStatusChangedType)[0]
OrderProcessedType = Literal["order_processed"]
ORDER_PROCESSED: Final[OrderProcessedType] = get_args(OrderProcessedType)[0]

# Every event the exchange carries, by name (= routing key = the outbox row's event_type).
EVENT_NAMES: Final = (NEW_ORDER, ORDER_STATUS_CHANGED, ORDER_PROCESSED)


# An instant with its offset (RFC 3339 ``date-time``; the database writes them in UTC, ``Z``).
Instant = Annotated[datetime, msgspec.Meta(tz=True)]


class OrderStatusChangedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """PATCH moved the order's status from ``from`` to ``to``."""

    event_id: uuid.UUID
    occurred_at: Instant
    order_id: uuid.UUID
    user_id: int
    from_: OrderStatus = msgspec.field(name="from")
    to: OrderStatus
    updated_at: Instant  # the order's, after the move


class OrderProcessedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """The job set the order's ``processed_at`` (the first time only)."""

    event_id: uuid.UUID
    occurred_at: Instant
    order_id: uuid.UUID
    user_id: int
    processed_at: Instant


OrderEvent = NewOrderEvent | OrderStatusChangedEvent | OrderProcessedEvent

# Each event's body schema, by name: the AsyncAPI document's test checks it against these.
EVENT_SCHEMAS: Final[dict[str, type[OrderEvent]]] = {
    NEW_ORDER: NewOrderEvent,
    ORDER_STATUS_CHANGED: OrderStatusChangedEvent,
    ORDER_PROCESSED: OrderProcessedEvent,
}


_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(NewOrderEvent)


def encode_event(event: NewOrderEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(body: bytes) -> NewOrderEvent:
    """Raise ``msgspec.DecodeError`` (or ``ValidationError``) for anything that is not one."""
    return _decoder.decode(body)
