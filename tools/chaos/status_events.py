"""The chaos run's check on the bus: every status change produced exactly one event.

A queue of the run's own (``<queue>.chaos-status``, on the real RabbitMQ, not through the
run's faulty links) is bound to the exchange by ``order_status_changed`` before the load
starts, as another service would bind one. After convergence (the outbox empty: every event
published) it is drained, and each order's events must be a chain of moves from ``PENDING``
to the status the order ended with, one event (one ``event_id``) per move. A message
delivered again with the same ``event_id`` is at-least-once delivery, counted apart, not a
failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aio_pika
import asyncpg
import msgspec

from shared.db import asyncpg_dsn
from shared.messaging.events import ORDER_STATUS_CHANGED, OrderStatusChangedEvent
from shared.settings import Settings

QUIET_S = 3.0  # the queue is drained once nothing came for this long

_decoder = msgspec.json.Decoder(OrderStatusChangedEvent)
Collected = asyncio.Queue[OrderStatusChangedEvent]


@dataclass
class StatusEvents:
    """What the drained queue held, against the orders' final statuses."""

    received: int = 0
    redelivered: int = 0  # same event_id twice: at least once, harmless
    orders_changed: int = 0
    doubled: list[str] = field(default_factory=list)  # a move with two different event_ids
    broken: list[str] = field(default_factory=list)  # the events do not lead to the status

    def failures(self) -> list[str]:
        counts = (
            (len(self.doubled), "status changes produced two events"),
            (len(self.broken), "orders' status events do not match their status changes"),
        )
        return [f"{n} {what}" for n, what in counts if n]


def judge(events: list[OrderStatusChangedEvent], final: dict[str, str]) -> StatusEvents:
    """One event per move, and each order's moves a chain from PENDING to its final status
    (an order that never moved has no event)."""
    result = StatusEvents(received=len(events))
    seen: set[str] = set()
    moves: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for event in events:
        if str(event.event_id) in seen:
            result.redelivered += 1
            continue
        seen.add(str(event.event_id))
        moves[str(event.order_id)][f"{event.from_}>{event.to}"].add(str(event.event_id))
    for order_id, status in final.items():
        made = moves.get(order_id, {})
        if any(len(ids) > 1 for ids in made.values()):
            result.doubled.append(order_id)
        chain, at = dict(move.split(">") for move in made), "PENDING"
        steps = 0
        while at in chain and steps <= len(chain):
            at, steps = chain[at], steps + 1
        if at != status or steps != len(chain):
            result.broken.append(order_id)
        result.orders_changed += bool(made)
    result.broken += sorted(set(moves) - set(final))  # events for orders that do not exist
    return result


@contextlib.asynccontextmanager
async def listening(settings: Settings) -> AsyncIterator[Collected]:
    """Bind the run's queue for ``order_status_changed`` (before the load) and collect what
    reaches it; the queue is deleted at the end."""
    connection = await aio_pika.connect(settings.rabbitmq_url, timeout=10)
    collected: Collected = asyncio.Queue()
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            settings.rabbitmq_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        queue = await channel.declare_queue(f"{settings.rabbitmq_queue}.chaos-status", durable=True)
        await queue.bind(exchange, routing_key=ORDER_STATUS_CHANGED)

        async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                collected.put_nowait(_decoder.decode(message.body))

        tag = await queue.consume(collect)
        try:
            yield collected
        finally:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
                await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


async def drain(collected: Collected) -> list[OrderStatusChangedEvent]:
    """Every event collected, once the queue has been quiet for ``QUIET_S``."""
    events = []
    while True:
        try:
            events.append(await asyncio.wait_for(collected.get(), QUIET_S))
        except TimeoutError:
            return events


async def final_statuses(database_url: str) -> dict[str, str]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        rows = await conn.fetch("SELECT id, status::text AS status FROM orders")
    finally:
        await conn.close()
    return {str(row["id"]): str(row["status"]) for row in rows}
