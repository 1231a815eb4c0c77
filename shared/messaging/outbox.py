"""The transactional outbox for ``new_order`` events: stage, relay, mark sent.

``staging`` adds the outbox row in the order's own statement; after the commit
``OutboxRelay`` publishes it with publisher confirms and marks it sent. If that fails (the
broker is down, the process dies) the row stays unsent and the worker's sweep
(``features/sweep_outbox/``) publishes it later. Delivery is therefore at least once;
consumers dedupe by order id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy import (
    ColumnElement,
    Insert,
    Update,
    bindparam,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import autocommit
from shared.logs import describe_error
from shared.messaging.bus import EventBus
from shared.messaging.events import NEW_ORDER, NewOrderEvent, encode_event
from shared.models import OutboxEvent

logger = logging.getLogger(__name__)


def staging(order_id: ColumnElement[uuid.UUID]) -> Insert:
    """The outbox row of the order whose id ``order_id`` selects, to run in the order's own
    statement (a CTE of its INSERT: nothing is staged when the order is not inserted).
    Binds ``event_id`` and ``payload`` (``staged_values``)."""
    return insert(OutboxEvent).from_select(
        ["id", "event_type", "order_id", "payload"],
        select(
            bindparam("event_id", type_=OutboxEvent.id.type),
            literal(NEW_ORDER),
            order_id,
            bindparam("payload", type_=OutboxEvent.payload.type),
        ),
    )


def staged_values(event: NewOrderEvent) -> dict[str, object]:
    return {"event_id": event.event_id, "payload": encode_event(event)}


async def publish_event(bus: EventBus, event: NewOrderEvent) -> bool:
    """Publish a committed event; False (logged) leaves it in the outbox for the sweeper."""
    try:
        await bus.publish(encode_event(event), message_id=str(event.event_id))
    except Exception as exc:  # noqa: BLE001 - any failure: the sweeper retries
        logger.warning(
            "new_order not published, left in outbox: %s",
            exc,
            extra={"order_id": str(event.order_id)},
        )
        return False
    return True


def marking_sent(event_ids: list[uuid.UUID]) -> Update:
    """The rows are published: the relay and the sweep (features/sweep_outbox) both say so."""
    return (
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(event_ids), OutboxEvent.sent_at.is_(None))
        .values(sent_at=func.now())
    )


async def mark_sent(engine: AsyncEngine, event_ids: list[uuid.UUID]) -> None:
    try:
        async with autocommit(engine).connect() as conn:  # one statement: atomic alone
            await conn.execute(marking_sent(event_ids))
    except Exception as exc:  # noqa: BLE001 - published twice at worst; consumers dedupe
        logger.warning("could not mark outbox rows sent: %s", describe_error(exc))


class OutboxRelay:
    """Publishes committed events off the request path; marks them sent in batches.

    POST /orders returns as soon as its transaction commits; the publish (with its broker
    confirm) and the ``sent_at`` update follow in the background, one UPDATE for all the
    events confirmed in the same few milliseconds. Nothing is lost if the process dies
    meanwhile: the rows are still unsent and the sweeper publishes them.
    """

    # One UPDATE per this interval, for all the events confirmed in it. Far below the
    # sweeper's age threshold (OUTBOX_SWEEP_AGE_S, 5 s), so it never re-publishes a row that
    # is only waiting here; longer means fewer UPDATEs (at 0.02 s, 2.7 % of the API's CPU).
    FLUSH_EVERY_S = 0.1

    def __init__(self, bus: EventBus, engine: AsyncEngine) -> None:
        self._bus = bus
        self._engine = engine
        self._running: set[asyncio.Task[None]] = set()
        self._confirmed: list[uuid.UUID] = []
        self._flusher: asyncio.Task[None] | None = None

    def submit(self, event: NewOrderEvent) -> None:
        task = asyncio.create_task(self._publish(event))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _publish(self, event: NewOrderEvent) -> None:
        if not await publish_event(self._bus, event):
            return
        self._confirmed.append(event.event_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        """Batch what confirms within a few ms; go on while more confirmed during a flush."""
        while True:
            await asyncio.sleep(self.FLUSH_EVERY_S)
            if not self._confirmed:
                return
            await self.flush()

    async def flush(self) -> None:
        confirmed, self._confirmed = self._confirmed, []
        if confirmed:
            await mark_sent(self._engine, confirmed)

    async def stop(self, within: float = 5.0) -> None:
        """On shutdown: let in-flight publishes finish (bounded), then record what was sent."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=within)
        if self._flusher is not None:
            await asyncio.wait({self._flusher}, timeout=within)
        await self.flush()
