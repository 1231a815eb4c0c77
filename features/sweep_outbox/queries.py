"""The sweep's statements: lock a batch of unsent outbox rows, record what became of each; and
the backlog's count (the sweep's gauge and ``just jobs``)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.messaging.outbox import OutboxMessage, marking_sent
from shared.models import OutboxEvent


async def lock_unsent(
    conn: AsyncConnection, older_than_s: float, batch: int
) -> list[OutboxMessage]:
    """Up to ``batch`` unsent rows older than ``older_than_s``, oldest first, locked until the
    transaction ends; rows another sweeper holds are skipped, not waited for. Each with the
    trace context it was staged in, for the message's headers; as the relay's messages, so
    both publish them the one way (``publish_row``)."""
    rows = await conn.execute(
        select(
            OutboxEvent.id.label("event_id"),
            OutboxEvent.event_type,
            OutboxEvent.order_id,
            OutboxEvent.payload,
            OutboxEvent.trace_context,
        )
        .where(
            OutboxEvent.sent_at.is_(None),
            OutboxEvent.created_at
            < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s),
        )
        .order_by(OutboxEvent.created_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    return [OutboxMessage(**row._mapping) for row in rows]


async def record_sent(conn: AsyncConnection, event_ids: list[uuid.UUID]) -> None:
    await conn.execute(marking_sent(event_ids))


async def record_failed(conn: AsyncConnection, event_ids: list[uuid.UUID]) -> None:
    """One more failed attempt each (the rows stay unsent: the next tick retries them)."""
    await conn.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(event_ids))
        .values(attempts=OutboxEvent.attempts + 1)
    )


async def outbox_backlog(conn: AsyncConnection) -> int:
    """Events not yet published: a count over the partial index of unsent rows."""
    count = await conn.scalar(
        select(func.count()).select_from(OutboxEvent).where(OutboxEvent.sent_at.is_(None))
    )
    return int(count or 0)
