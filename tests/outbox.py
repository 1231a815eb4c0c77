"""Test helpers for the outbox: publish a staged event at once, without the relay's delay."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import Database
from shared.messaging.bus import EventBus
from shared.messaging.events import NewOrderEvent
from shared.messaging.outbox import mark_sent, new_order_message, publish_message


async def publish_staged(bus: EventBus, engine: AsyncEngine, event: NewOrderEvent) -> bool:
    """Publish a committed event and mark it sent, in line (``OutboxRelay`` does it later)."""
    if not await publish_message(bus, new_order_message(event)):
        return False
    await mark_sent(Database(engine), [event.event_id])
    return True
