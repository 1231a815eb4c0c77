"""The reconciler's statements: claim due orders, re-check them, record a re-enqueue; and
the read of the orders whose jobs keep failing (the metric and ``just jobs``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Update, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.messaging.events import NEW_ORDER
from shared.models import Order, OutboxEvent
from shared.settings import Settings

MAX_DOUBLINGS = 30  # keeps 2^n finite; the delay is capped long before


def _seconds(value: float | ColumnElement[Any]) -> ColumnElement[Any]:
    return func.make_interval(0, 0, 0, 0, 0, 0, value)


def claim_statement(settings: Settings) -> Update:
    """Take up to a batch of due orders and move their next look ahead (RETURNING their ids)."""
    due = (
        select(Order.id)
        .where(
            Order.processed_at.is_(None),
            Order.created_at <= func.now() - _seconds(settings.reconcile_after_s),
            or_(Order.reconcile_next_at.is_(None), Order.reconcile_next_at <= func.now()),
            ~exists().where(OutboxEvent.order_id == Order.id, OutboxEvent.sent_at.is_(None)),
        )
        .order_by(Order.created_at)
        .limit(settings.reconcile_batch)
        .with_for_update(skip_locked=True)
    )
    return (
        update(Order)
        .where(Order.id.in_(due.scalar_subquery()))
        .values(reconcile_next_at=func.now() + _seconds(settings.reconcile_after_s))
        .returning(Order.id)
    )


async def claim_due_orders(conn: AsyncConnection, settings: Settings) -> list[uuid.UUID]:
    """The claim, one statement committed at once (autocommit): no row stays locked while
    Redis is asked."""
    return list(await conn.scalars(claim_statement(settings)))


async def still_unprocessed(
    conn: AsyncConnection, order_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    rows = await conn.scalars(
        select(Order.id).where(Order.id.in_(order_ids), Order.processed_at.is_(None))
    )
    return set(rows)


async def record_reenqueued(
    conn: AsyncConnection, settings: Settings, order_ids: Sequence[uuid.UUID]
) -> None:
    """Count the re-enqueue and put the order's next look off: RECONCILE_AFTER_S × 2^(n-1)."""
    doublings = func.least(Order.reconcile_attempts, MAX_DOUBLINGS)
    delay = func.least(
        settings.reconcile_after_s * func.power(2, doublings), settings.reconcile_max_delay_s
    )
    await conn.execute(
        update(Order)
        .where(Order.id.in_(order_ids))
        .values(
            reconcile_attempts=Order.reconcile_attempts + 1,
            reconcile_next_at=func.now() + _seconds(delay),
        )
    )


async def new_order_trace_contexts(
    conn: AsyncConnection, order_ids: Sequence[uuid.UUID] | set[uuid.UUID]
) -> dict[uuid.UUID, dict[str, str]]:
    """The trace context each order's ``new_order`` was staged in (its POST's), where known."""
    rows = await conn.execute(
        select(OutboxEvent.order_id, OutboxEvent.trace_context).where(
            OutboxEvent.order_id.in_(list(order_ids)),
            OutboxEvent.event_type == NEW_ORDER,
            OutboxEvent.trace_context.is_not(None),
        )
    )
    return {order_id: context for order_id, context in rows if context is not None}


@dataclass(frozen=True)
class FailingOrder:
    id: uuid.UUID
    attempts: int
    created_at: datetime
    next_look_at: datetime | None


# Unprocessed orders the reconciler had to enqueue again: their jobs fail (or keep vanishing).
_FAILING = (Order.processed_at.is_(None), Order.reconcile_attempts > 0)


async def count_failing_orders(conn: AsyncConnection) -> int:
    count = await conn.scalar(select(func.count()).select_from(Order).where(*_FAILING))
    return int(count or 0)


async def oldest_failing_orders(conn: AsyncConnection, limit: int) -> list[FailingOrder]:
    rows = await conn.execute(
        select(Order.id, Order.reconcile_attempts, Order.created_at, Order.reconcile_next_at)
        .where(*_FAILING)
        .order_by(Order.created_at)
        .limit(limit)
    )
    return [FailingOrder(*row) for row in rows]
