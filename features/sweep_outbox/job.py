"""The outbox sweep: publishes the order's events that the relays could not.

POST /orders commits its order with the event's outbox row (PATCH /orders and the
``process_order`` job likewise with theirs), then publishes it off the request path
(``shared.outbox.OutboxRelay``). When that fails (RabbitMQ down, the process
dying between the commit and the confirm) the row stays unsent. Every
``OUTBOX_SWEEP_INTERVAL_S`` (and at a worker's start) this job publishes the unsent rows
older than ``OUTBOX_SWEEP_AGE_S`` (younger ones are still the relay's), in batches of
``SWEEP_BATCH``; full batches repeat for ``SWEEP_BUDGET_S`` at most, then it yields to the
next tick. Delivery is therefore at least once; consumers dedupe by event id. Each row goes
out with its ``event_type`` as routing key and message type, and the trace context it was
staged in as headers (its publish joins the order's trace, however late).

Safe with several workers: ``FOR UPDATE SKIP LOCKED`` (``queries.py``) keeps two sweepers
from publishing a row at the same time, and arq runs a cron tick once across workers. While
the bus is down nothing is locked or touched.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy.exc import SQLAlchemyError

from features.sweep_outbox.queries import lock_unsent, outbox_backlog, record_failed, record_sent
from shared.db import Database
from shared.logs import describe_error
from shared.messaging.bus import EventBus
from shared.messaging.outbox import publish_row
from shared.services import WorkerServices

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500
SWEEP_BUDGET_S = 20.0  # keep sweeping full batches for this long per tick, then yield

OUTBOX_SWEPT = Counter("orders_outbox_swept_total", "outbox events published by the sweeper")
OUTBOX_BACKLOG = Gauge("orders_outbox_backlog", "outbox events not yet published (last sweep)")
JOB_QUEUE_DEPTH = Gauge("orders_job_queue_depth", "arq jobs waiting in the queue (last sweep)")


async def sweep_outbox(
    bus: EventBus, db: Database, *, older_than_s: float = 5.0, batch: int = SWEEP_BATCH
) -> int:
    """One batch: publish unsent rows older than ``older_than_s``; returns how many went out.

    A batch is published concurrently (confirms are pipelined on the channel), so a backlog
    left by an outage drains at the broker's pace, not one round trip per row.
    """
    if not bus.ready:
        return 0
    async with db.begin() as conn:
        rows = await lock_unsent(conn, older_than_s, batch)
        if not rows:
            return 0
        outcomes = await asyncio.gather(
            *(publish_row(bus, row) for row in rows),
            return_exceptions=True,
        )
        sent = [
            row.event_id for row, outcome in zip(rows, outcomes, strict=True) if outcome is None
        ]
        failed = [
            (row, outcome)
            for row, outcome in zip(rows, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        ]
        if sent:
            await record_sent(conn, sent)
        if failed:
            logger.warning(
                "outbox sweep: %d of %d not published (%s); next tick retries",
                len(failed),
                len(rows),
                failed[0][1],
                extra={"order_id": str(failed[0][0].order_id)},
            )
            await record_failed(conn, [row.event_id for row, _ in failed])
    if sent:
        logger.info("outbox sweep published %d events", len(sent))
    return len(sent)


async def sweep_outbox_job(ctx: dict[str, Any]) -> int:
    """The cron job: full batches repeat until the backlog is gone or the budget is spent."""
    services: WorkerServices = ctx["services"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SWEEP_BUDGET_S
    total = 0
    while True:
        try:
            published = await sweep_outbox(
                services.bus,
                services.db,
                older_than_s=services.settings.outbox_sweep_age_s,
                batch=SWEEP_BATCH,
            )
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("outbox sweep skipped: %s", describe_error(exc))
            return total
        total += published
        OUTBOX_SWEPT.inc(published)
        if published < SWEEP_BATCH or loop.time() > deadline:
            await record_backlog(services)
            return total


async def record_backlog(services: WorkerServices) -> None:
    """Refresh the backlog gauges once per sweep (cheap: a partial-index count and a ZCARD)."""
    try:
        async with services.db.connect() as conn:
            OUTBOX_BACKLOG.set(await outbox_backlog(conn))
        JOB_QUEUE_DEPTH.set(await services.redis.zcard(services.settings.arq_queue))
    except Exception as exc:  # noqa: BLE001 - gauges are best effort
        logger.debug("backlog gauges not refreshed: %s", exc)
