"""The ``process_order`` job: wait, mark the order processed once (staging its
``order_processed`` event in the same statement), refresh its cached view.

arq runs it (``workers/worker.py`` registers it); the consumer enqueues it with job id
``process_order:<id>``. It is idempotent by order id, so a rerun (a redelivered event, a
retry, the reconciler) is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from arq.worker import Retry
from opentelemetry.trace import SpanKind
from sqlalchemy.exc import SQLAlchemyError

from features.process_order.queries import mark_processed_once
from shared import tracing
from shared.db import RAW_CONNECTION_ERRORS
from shared.logs import describe_error
from shared.messaging.jobs import PROCESS_ORDER
from shared.metrics import JOBS
from shared.orders.view import order_view
from shared.services import WorkerServices

logger = logging.getLogger(__name__)

RETRY_MAX_DEFER_S = 60


async def process_order(
    ctx: dict[str, Any], order_id: str, trace_context: dict[str, str] | None = None
) -> bool:
    """The job: ``mark_processed``, with failures counted for /metrics (arq retries them).

    Its span ``process_order`` (the wait, the UPDATE, the cache refresh) continues the trace
    of ``trace_context``: the consumer's span, or the reconciler's that enqueued it again.
    """
    with tracing.span(
        PROCESS_ORDER,
        kind=SpanKind.CONSUMER,
        parent=trace_context,
        attributes={"order.id": order_id, "arq.job.try": ctx.get("job_try", 1)},
    ):
        try:
            return await mark_processed(ctx, order_id)
        except Retry:
            raise
        except Exception:
            JOBS.labels("failed").inc()
            raise


async def mark_processed(ctx: dict[str, Any], order_id: str) -> bool:
    """Mark the order processed (once) and refresh its cached view; True if this run did it.

    When the order was already processed the current view is cached anyway: a run that was
    cut off between its commit and its cache write is repaired by the retry. The cache keeps
    whichever view has the newest ``updated_at``, so this never undoes a later PATCH.
    """
    services: WorkerServices = ctx["services"]
    order_uuid = uuid.UUID(order_id)
    extra = {"order_id": order_id}
    await asyncio.sleep(services.settings.process_order_delay_s)
    try:
        async with services.db.connect() as conn:  # one statement: atomic alone
            marked = await mark_processed_once(conn, order_uuid)
    except (SQLAlchemyError, *RAW_CONNECTION_ERRORS) as exc:  # a new connection failing
        JOBS.labels("retried").inc()
        defer = min(2 ** ctx.get("job_try", 1), RETRY_MAX_DEFER_S)
        logger.warning(
            "processing failed (%s); retrying in %ss", describe_error(exc), defer, extra=extra
        )
        raise Retry(defer=defer) from exc
    if marked is None:
        JOBS.labels("missing").inc()
        logger.warning("Order %s not found; nothing to process", order_id, extra=extra)
        return False
    row, event = marked
    if event is not None:  # published after the commit; the sweeper if this fails
        services.outbox_relay.submit(event)
    await services.order_cache.cache_order(order_view(row))
    processed_now: bool = row.processed_now
    if processed_now:
        JOBS.labels("processed").inc()
        logger.info("Order %s processed", order_id, extra=extra)
    else:
        JOBS.labels("already_processed").inc()
        logger.info("Order %s was already processed", order_id, extra=extra)
    return processed_now
