"""The ``new_order`` event: its schema (version 1) and its JSON wire format.

POST /orders builds it (``new_order_event``) and stages it in the outbox with the order
(``shared.messaging.outbox``), the consumer decodes it; both read this one definition.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final, Literal, get_args

import msgspec

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


_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(NewOrderEvent)


def encode_event(event: NewOrderEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(body: bytes) -> NewOrderEvent:
    """Raise ``msgspec.DecodeError`` (or ``ValidationError``) for anything that is not one."""
    return _decoder.decode(body)
