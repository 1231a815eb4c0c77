"""The consumer's second callback: every order event on the bus into its owner's event log.

The consumer process (workers/consumer.py) runs it on its own queue (``<queue>.sse``, bound
with every event's routing key). Per message:

- a body that is not the event its routing key names → dead-lettered, never retried;
- the order is read (one primary-key SELECT, scoped to the event's user) and its public view,
  with the event's own fields laid over it (``changes.view_after``), is appended to the
  user's log in one Redis script that also drops a duplicate by ``event_id`` and publishes
  the notice the API processes stream from. Acked after that;
- the order is gone (its account was deleted): acked, nothing appended;
- PostgreSQL or Redis unreachable: held unacked, retried with backoff, like ``new_order``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

import msgspec
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import Counter

from features.feed_order_events.changes import view_after
from shared.db import Database
from shared.messaging.consuming import HeldMessageHandler, settle
from shared.messaging.events import EVENT_SCHEMAS, OrderEvent
from shared.orders.cache import OrderCache
from shared.orders.event_log import EventLog
from shared.orders.event_positions import STREAM_EVENT_NAMES
from shared.orders.queries import find_own_order
from shared.orders.view import order_view

logger = logging.getLogger(__name__)

FED: Final = Counter(
    "orders_event_log_appends_total",
    "order events the consumer settled into the users' event logs, by outcome",
    ["outcome"],  # appended | duplicate | order_gone | dead_lettered
)

_decoders: Final = {name: msgspec.json.Decoder(schema) for name, schema in EVENT_SCHEMAS.items()}


def decode(routing_key: str | None, body: bytes) -> OrderEvent:
    """The event its routing key names; ``msgspec.DecodeError`` for anything else."""
    decoder = _decoders.get(routing_key or "")
    if decoder is None:
        raise msgspec.DecodeError(f"no order event is routed by {routing_key!r}")
    event: OrderEvent = decoder.decode(body)
    return event


class FeedHandler(HeldMessageHandler):
    """aio-pika runs deliveries concurrently (up to the prefetch); one user's are appended one
    at a time, in the order the queue delivered them, so a user's log keeps the bus's order
    (a lock per user with a delivery waiting, taken before the handler first yields)."""

    def __init__(self, db: Database, log: EventLog, stop: asyncio.Event) -> None:
        super().__init__(stop, logger)
        self._db = db
        self._events = log
        self._turns: dict[int, tuple[asyncio.Lock, list[None]]] = {}

    @contextlib.asynccontextmanager
    async def _in_turn(self, user_id: int) -> AsyncIterator[None]:
        lock, waiting = self._turns.setdefault(user_id, (asyncio.Lock(), []))
        waiting.append(None)
        try:
            async with lock:  # FIFO: in the order the deliveries got here
                yield
        finally:
            waiting.pop()
            if not waiting:
                del self._turns[user_id]

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            event = decode(message.routing_key, message.body)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
            if await self.dead_letter(message, exc):
                FED.labels("dead_lettered").inc()
            return
        extra = {"order_id": str(event.order_id)}
        name = STREAM_EVENT_NAMES[message.routing_key or ""]  # decode() knew the key
        async with self._in_turn(event.user_id):
            entry = await self.hold(
                lambda: self._append(event, name), "append to the event log", extra
            )
        if await settle(message.ack(), message):
            FED.labels(entry).inc()
            logger.debug("event %s: %s", event.event_id, entry, extra=extra)

    async def _append(self, event: OrderEvent, name: str) -> str:
        async with self._db.connect() as conn:
            row = await find_own_order(conn, event.order_id, event.user_id)
        if row is None:
            return "order_gone"
        data = OrderCache.encode(view_after(order_view(row), event)).decode()
        entry = await self._events.append(str(event.event_id), event.user_id, name, data)
        return "duplicate" if entry is None else "appended"
