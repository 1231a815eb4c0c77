"""Test helpers for the order's events on the bus: a queue of the test's own, bound to an
exchange by routing key as another service would bind one, and the messages it got."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import aio_pika
import msgspec
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from shared.messaging.events import (
    EVENT_SCHEMAS,
    OrderEvent,
)


@contextlib.asynccontextmanager
async def bound_queue(
    channel: AbstractChannel, exchange: str, routing_key: str
) -> AsyncIterator[AbstractQueue]:
    """An exclusive queue bound to ``exchange`` (declared here if the app has not yet) with
    ``routing_key``, deleted after the test."""
    declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(declared, routing_key=routing_key)
    try:
        yield queue
    finally:
        await queue.delete(if_unused=False, if_empty=False)


async def events_of(
    queue: AbstractQueue, order_id: uuid.UUID | str, *, within: float = 3.0
) -> list[OrderEvent]:
    """Every message for ``order_id`` that reached ``queue`` in ``within`` seconds, decoded by
    its type's Struct (which fails on a body that does not match it). Waits the whole time:
    a second (duplicate) message would be counted."""
    found: list[OrderEvent] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        message: AbstractIncomingMessage | None = await queue.get(fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        assert message.type == message.routing_key, "the message type is the event's name"
        assert message.routing_key is not None
        event: OrderEvent = msgspec.json.decode(
            message.body, type=EVENT_SCHEMAS[message.routing_key]
        )
        assert message.message_id == str(event.event_id)
        if str(event.order_id) == str(order_id):
            found.append(event)
    return found
