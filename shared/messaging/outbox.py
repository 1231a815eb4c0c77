"""The transactional outbox for the order's events: stage, relay, mark sent.

``staging`` (``new_order``) and ``staging_built`` (``order_status_changed``,
``order_processed``, whose bodies the database builds) add the outbox row in the change's own
statement, as a CTE of it: a change that does not happen or is rolled back stages nothing.
After the commit
``OutboxRelay`` publishes it with publisher confirms and marks it sent. If that fails (the
broker is down, the process dies) the row stays unsent and the worker's sweep
(``features/sweep_outbox/``) publishes it later. Delivery is therefore at least once;
consumers dedupe by ``event_id`` (the message id).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from opentelemetry.trace import SpanKind
from sqlalchemy import (
    ColumnElement,
    Insert,
    LargeBinary,
    Text,
    Update,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.sql.expression import CTE

from shared import tracing
from shared.db import Database
from shared.logs import describe_error
from shared.messaging.bus import EventBus, span_attributes
from shared.messaging.events import NEW_ORDER, NewOrderEvent, encode_event
from shared.models import OutboxEvent

logger = logging.getLogger(__name__)


def staging(order_id: ColumnElement[uuid.UUID]) -> Insert:
    """The ``new_order`` outbox row of the order whose id ``order_id`` selects, to run in the
    order's own statement (a CTE of its INSERT: nothing is staged when the order is not
    inserted). Binds ``event_id`` and ``payload`` (``staged_values``)."""
    return staging_built(NEW_ORDER, order_id, bindparam("payload", type_=OutboxEvent.payload.type))


def staged_values(message: OutboxMessage) -> dict[str, object]:
    """The values ``staging`` binds: the event encoded once, for the row and the relay alike,
    and the trace context it was staged in."""
    return {
        "event_id": message.event_id,
        "payload": message.payload,
        "trace_context": message.trace_context,
    }


def utc_text(timestamp: ColumnElement[Any]) -> ColumnElement[str]:
    """A timestamptz as RFC 3339 text in UTC with microseconds (``…T18:39:04.123456Z``), as
    msgspec writes and reads it, whatever the session's TimeZone."""
    return func.to_char(func.timezone("UTC", timestamp), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')


def json_body(**fields: ColumnElement[Any]) -> ColumnElement[bytes]:
    """An event's JSON body built by the database, as the outbox's bytes (``payload``)."""
    pairs = [part for name, value in fields.items() for part in (literal(name), value)]
    return func.convert_to(cast(func.json_build_object(*pairs), Text), "UTF8", type_=LargeBinary)


def staging_built(
    event_type: str, order_id: ColumnElement[uuid.UUID], payload: ColumnElement[bytes]
) -> Insert:
    """The outbox row of an event whose body the change's own statement builds (``json_body``
    over the CTE of the change's RETURNING): one row per row the change touched, none if it
    touched none. Binds ``event_id`` and ``trace_context`` (the change's span, or None);
    returns the row's ``order_id`` and ``payload`` for the relay."""
    return (
        insert(OutboxEvent)
        .from_select(
            ["id", "event_type", "order_id", "payload", "trace_context"],
            select(
                bindparam("event_id", type_=OutboxEvent.id.type),
                literal(event_type),
                order_id,
                payload,
                bindparam("trace_context", type_=OutboxEvent.trace_context.type),
            ),
        )
        .returning(OutboxEvent.order_id, OutboxEvent.payload)
    )


def staging_change(event_type: str, changed: CTE, **fields: ColumnElement[Any]) -> Insert:
    """``staging_built`` for an event about the rows of ``changed`` (the CTE of an UPDATE's
    RETURNING, with the order's ``id`` and ``user_id``): the body every such event starts
    with (``event_id``, ``occurred_at``, ``order_id``, ``user_id``), then ``fields``. Binds
    ``event_id`` and ``occurred_at`` (``change_values``)."""
    return staging_built(
        event_type,
        changed.c.id,
        json_body(
            event_id=bindparam("event_id", type_=OutboxEvent.id.type),
            occurred_at=utc_text(bindparam("occurred_at", type_=OutboxEvent.created_at.type)),
            order_id=changed.c.id,
            user_id=changed.c.user_id,
            **fields,
        ),
    )


def change_values() -> dict[str, Any]:
    """The parameters ``staging_change`` binds: a fresh event id, now, and the current trace
    context."""
    return {
        "event_id": uuid.uuid4(),
        "occurred_at": datetime.now(UTC),
        "trace_context": tracing.carrier(),
    }


class OutboxMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A committed outbox row as the relay publishes it: any event, by its name."""

    event_id: uuid.UUID
    event_type: str  # the routing key and the message's type
    order_id: uuid.UUID
    payload: bytes
    # The W3C context of the change that staged it: the publish continues its trace.
    trace_context: tracing.Carrier | None = None


def staged_message(
    event_type: str, order_id: uuid.UUID, params: dict[str, Any], payload: bytes
) -> OutboxMessage:
    """The relay's message for a row ``staging_change`` staged with ``params``."""
    return OutboxMessage(
        event_id=params["event_id"],
        event_type=event_type,
        order_id=order_id,
        payload=payload,
        trace_context=params["trace_context"],
    )


def new_order_message(event: NewOrderEvent) -> OutboxMessage:
    return OutboxMessage(
        event_id=event.event_id,
        event_type=NEW_ORDER,
        order_id=event.order_id,
        payload=encode_event(event),
        trace_context=tracing.carrier(),
    )


async def publish_row(bus: EventBus, row: OutboxMessage) -> None:
    """Publish an outbox row, the relay's or the sweeper's; raise if it was not confirmed.

    A row staged inside a trace is published in a producer span of that trace, whose context
    travels in the message's headers for the consumer to continue; a row without one (tracing
    off) is published as it is, at no cost.
    """
    message_id = str(row.event_id)
    if row.trace_context is None:
        await bus.publish(row.payload, message_id=message_id, routing_key=row.event_type)
        return
    with tracing.span(
        f"{row.event_type} publish",
        kind=SpanKind.PRODUCER,
        parent=row.trace_context,
        attributes=span_attributes(
            "send",
            bus.topology.exchange,
            message_id,
            str(row.order_id),
            routing_key=row.event_type,
        ),
    ):
        # This process's producer span; tracing off here, the stored context passes through.
        headers = tracing.carrier() or dict(row.trace_context)
        await bus.publish(
            row.payload, message_id=message_id, routing_key=row.event_type, headers=headers
        )


async def publish_message(bus: EventBus, message: OutboxMessage) -> bool:
    """Publish a committed event; False (logged) leaves it in the outbox for the sweeper."""
    try:
        await publish_row(bus, message)
    except Exception as exc:  # noqa: BLE001 - any failure: the sweeper retries
        logger.warning(
            "%s not published, left in outbox: %s",
            message.event_type,
            exc,
            extra={"order_id": str(message.order_id)},
        )
        return False
    return True


def marking_sent(event_ids: list[uuid.UUID]) -> Update:
    """The rows are published: the relay and the sweep (features/sweep_outbox) both say so.

    The rows are found by their key alone; a row marked already keeps its first ``sent_at``.
    Not ``sent_at IS NULL`` in the WHERE: that lets the planner scan a partial index of the
    unsent rows (``ix_outbox_unsent*``), which looks empty to ANALYZE but holds, until a
    vacuum, an entry for every row sent since (~4,000 read a batch in the bench).
    """
    return (
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(event_ids))
        .values(sent_at=func.coalesce(OutboxEvent.sent_at, func.now()))
    )


async def mark_sent(db: Database, event_ids: list[uuid.UUID]) -> None:
    try:
        async with db.connect() as conn:  # one statement: atomic alone
            await conn.execute(marking_sent(event_ids))
    except Exception as exc:  # noqa: BLE001 - published twice at worst; consumers dedupe
        logger.warning("could not mark outbox rows sent: %s", describe_error(exc))


class OutboxRelay:
    """Publishes committed events off the request path; marks them sent in batches.

    The API's relay publishes what its requests staged (POST and PATCH /orders), the worker's
    what its jobs did (``order_processed``). POST /orders returns as soon as its transaction
    commits; the publish (with its broker confirm) and the ``sent_at`` update follow in the
    background, one UPDATE for all the events confirmed in the same few milliseconds. Nothing
    is lost if the process dies meanwhile: the rows are still unsent and the sweeper publishes them.
    """

    # One UPDATE per this interval, for all the events confirmed in it. Far below the
    # sweeper's age threshold (OUTBOX_SWEEP_AGE_S, 5 s), so it never re-publishes a row that
    # is only waiting here; longer means fewer UPDATEs (at 0.02 s, 2.7 % of the API's CPU).
    FLUSH_EVERY_S = 0.1

    def __init__(self, bus: EventBus, db: Database) -> None:
        self._bus = bus
        self._db = db
        self._running: set[asyncio.Task[None]] = set()
        self._confirmed: list[uuid.UUID] = []
        self._flusher: asyncio.Task[None] | None = None

    def submit(self, message: OutboxMessage) -> None:
        task = asyncio.create_task(self._publish(message))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _publish(self, message: OutboxMessage) -> None:
        if not await publish_message(self._bus, message):
            return
        self._confirmed.append(message.event_id)
        if self._flusher is None or self._flusher.done():
            # A context of its own: the batch's UPDATE belongs to no one request (nor its trace).
            self._flusher = asyncio.create_task(self._flush_soon(), context=contextvars.Context())

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
            await mark_sent(self._db, confirmed)

    async def stop(self, within: float = 5.0) -> None:
        """On shutdown: let in-flight publishes finish (bounded), then record what was sent."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=within)
        if self._flusher is not None:
            await asyncio.wait({self._flusher}, timeout=within)
        await self.flush()
