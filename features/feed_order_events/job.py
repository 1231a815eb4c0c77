"""The consumer's second callback: every order event on the bus into its owner's event log.

The consumer process (workers/consumer.py) runs it on its own queue (``<queue>.sse``, bound
with every event's routing key). Per message:

- a body that is not the event its routing key names → dead-lettered, never retried;
- the events that arrive together are settled as one batch (``FeedHandler``): their orders
  are read in one SELECT (scoped to each event's user), and each order's public view, with
  its event's own fields laid over it (``changes.view_after``), is appended to its user's log
  in one Redis script call for the batch that also drops a duplicate by ``event_id`` and
  publishes the notices the API processes stream from. Acked after that;
- the order is gone (its account was deleted): acked, nothing appended;
- PostgreSQL or Redis unreachable: held unacked, retried with backoff, like ``new_order``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import Counter

from features.feed_order_events.acks import BatchAcks
from features.feed_order_events.changes import view_after
from features.feed_order_events.queries import find_own_orders
from shared.db import Database
from shared.messaging.consuming import HeldMessageHandler
from shared.messaging.events import EVENT_SCHEMAS, OrderEvent
from shared.orders.cache import OrderCache
from shared.orders.event_log import Appending, EventLog
from shared.orders.event_positions import STREAM_EVENT_NAMES
from shared.orders.view import OrderRecord, order_view

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


class Delivery(msgspec.Struct, frozen=True):
    """A decoded message waiting for its batch: its event and the stream's name for it."""

    message: AbstractIncomingMessage
    event: OrderEvent
    name: str


def planned_appends(
    events: Sequence[tuple[OrderEvent, str]], rows: Iterable[OrderRecord]
) -> list[Appending | None]:
    """Per event, in the order given, what goes into its owner's log; None: its order is gone
    (or is another user's: ``rows`` should not hold it, and it is not trusted to)."""
    orders = {(row.id, row.user_id): order_view(row) for row in rows}
    appends: list[Appending | None] = []
    for event, name in events:
        current = orders.get((event.order_id, event.user_id))
        if current is None:
            appends.append(None)
            continue
        data = OrderCache.encode(view_after(current, event)).decode()
        appends.append(Appending(str(event.event_id), event.user_id, name, data))
    return appends


class FeedHandler(HeldMessageHandler):
    """aio-pika runs deliveries concurrently (up to the prefetch); they are settled in
    batches, one batch at a time: a delivery joins the waiting list (in the order the queue
    delivered them: before the handler first yields), lets the loop turn once so the others
    that arrived together join too, and whichever handler then holds the turn takes the whole
    list. So a user's log keeps the bus's order, and a burst costs one SELECT, one script
    call and (where safe: ``acks``) one ack frame instead of one each per event."""

    def __init__(self, db: Database, log: EventLog, stop: asyncio.Event) -> None:
        super().__init__(stop, logger)
        self._db = db
        self._events = log
        self._waiting: list[Delivery] = []
        self._turn = asyncio.Lock()  # FIFO
        self._acks = BatchAcks()

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            event = decode(message.routing_key, message.body)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
            if await self.dead_letter(message, exc):
                FED.labels("dead_lettered").inc()
            return
        name = STREAM_EVENT_NAMES[message.routing_key or ""]  # decode() knew the key
        self._waiting.append(Delivery(message, event, name))
        await asyncio.sleep(0)  # the deliveries of this loop turn join the batch
        async with self._turn:
            if not self._waiting:  # an earlier turn took (and settled) this delivery
                return
            batch, self._waiting = self._waiting, []
            extra = {"order_id": str(batch[0].event.order_id), "batch": len(batch)}
            outcomes = await self.hold(
                lambda: self._append(batch), "append to the event log", extra
            )
            # Under the turn: a later batch's one-frame ack must not overtake this one's.
            acked = await self._acks.ack([d.message for d in batch])
        for delivery, outcome, ok in zip(batch, outcomes, acked, strict=True):
            if ok:
                FED.labels(outcome).inc()
                logger.debug(
                    "event %s: %s",
                    delivery.event.event_id,
                    outcome,
                    extra={"order_id": str(delivery.event.order_id)},
                )

    async def dead_letter(self, message: AbstractIncomingMessage, error: Exception) -> bool:
        rejected = await super().dead_letter(message, error)
        if rejected:
            self._acks.settled(message)
        return rejected

    async def _append(self, batch: Sequence[Delivery]) -> list[str]:
        """One read of the batch's orders, one script call appending those that exist; per
        delivery its outcome."""
        owned = list({(d.event.order_id, d.event.user_id): None for d in batch})
        async with self._db.connect() as conn:
            rows = await find_own_orders(conn, owned)
        appends = planned_appends([(d.event, d.name) for d in batch], rows)
        present = [a for a in appends if a is not None]
        entries = iter(await self._events.append(present) if present else [])
        return [
            "order_gone" if a is None else "appended" if next(entries) else "duplicate"
            for a in appends
        ]
