"""The ``new_order`` event: its schema (version 1) and its JSON wire format.

The API stages it in the outbox (``shared.messaging.outbox``), the consumer decodes it; both read
this one definition.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

import msgspec


class NewOrderEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Version 1 of the event. Add fields with defaults; a breaking change is a new version."""

    version: Literal[1] = 1
    type: Literal["new_order"] = "new_order"
    event_id: uuid.UUID
    order_id: uuid.UUID
    user_id: int
    total_price: Decimal
    created_at: datetime


_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(NewOrderEvent)


def encode_event(event: NewOrderEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(body: bytes) -> NewOrderEvent:
    """Raise ``msgspec.DecodeError`` (or ``ValidationError``) for anything that is not one."""
    return _decoder.decode(body)
