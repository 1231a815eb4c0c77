"""The reconciler: enqueues ``process_order`` again for orders the job store lost or gave up on.

PostgreSQL, never Redis, says whether an order is done. Every ``RECONCILE_INTERVAL_S`` a
worker claims up to ``RECONCILE_BATCH`` orders that are still unprocessed
``RECONCILE_AFTER_S`` after their creation, are due (``reconcile_next_at`` passed or unset)
and have no unsent outbox event (an unsent one is the sweeper's: its event brings the job).
Then it looks at each one's job in arq's Redis:

- queued, waiting to retry, or running: nothing to do; the claim already moved the order's
  next look ``RECONCILE_AFTER_S`` ahead;
- gone (Redis lost its data), or only a stored result left (a job that used up its tries;
  arq refuses a job id whose result exists, so the result is removed first): it is enqueued
  again with its own id ``process_order:<id>`` and the order's next look is put off by a delay
  that doubles with each re-enqueue (``RECONCILE_AFTER_S`` × 2^(n-1), at most
  ``RECONCILE_MAX_DELAY_S``): an order whose job keeps failing is tried less and less often,
  never forgotten.

Safe with several workers: the claim is one UPDATE over ``FOR UPDATE SKIP LOCKED`` rows that
moves their ``reconcile_next_at`` forward and commits before Redis is touched, so two
reconcilers never hold the same order, no row lock is held across Redis calls, and one that
dies mid-way delays its orders by ``RECONCILE_AFTER_S`` at most. A live job is never doubled:
whether it is live is read and its leftovers removed in one Lua script (atomic in Redis:
``shared.messaging.arq_mirror.job_state``), and
arq's own enqueue refuses the id if a job appeared since. A job that finishes between the
claim and the look is caught by re-reading ``processed_at`` after the look. Nothing to do
costs one index scan over the unprocessed orders only (``ix_orders_unprocessed``; plan in
RELIABILITY.md).

Traced (``shared.tracing``), each re-enqueue is a span of a new trace that links to the
order's original one (read from its ``new_order`` outbox row, kept after it is sent), and the
job continues the new trace: the order's trace shows where it was picked up again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Gauge

from features.reconcile_orders.queries import (
    claim_due_orders,
    count_failing_orders,
    new_order_trace_contexts,
    record_reenqueued,
    still_unprocessed,
)
from shared import tracing
from shared.db import Database
from shared.logs import describe_error, error_fields
from shared.messaging.arq_mirror import FAILED, LIVE, LOST, job_state
from shared.messaging.jobs import PROCESS_ORDER, enqueue_process_order, process_order_job_id
from shared.services import WorkerServices
from shared.settings import Settings

logger = logging.getLogger(__name__)

RECONCILER_REENQUEUED = Counter(
    "orders_reconciler_reenqueued_total",
    "process_order jobs the reconciler enqueued again, by what had become of the job",
    ["reason"],  # lost (gone from Redis) | failed (only its failed result was left)
)
RECONCILER_FAILING = Gauge(
    "orders_reconciler_failing",
    "unprocessed orders whose job the reconciler had to enqueue again (last run)",
)


def reenqueued_counts_key(settings: Settings) -> str:
    """A Redis hash of re-enqueues by reason, shared by every worker, for ``just jobs``."""
    return f"{settings.redis_prefix}reconciler:reenqueued"


@dataclass
class Outcome:
    claimed: int = 0
    live: int = 0
    lost: int = 0
    failed: int = 0


class Reconciler:
    """One worker's reconciler: its database and arq's Redis client."""

    def __init__(self, settings: Settings, db: Database, arq: ArqRedis) -> None:
        self._settings = settings
        self._db = db
        self._arq = arq
        self.counts_key = reenqueued_counts_key(settings)

    async def run(self) -> Outcome:
        """One batch: claim, look at each job, enqueue the ones that are gone, record."""
        outcome = Outcome()
        async with self._db.connect() as conn:
            claimed = await claim_due_orders(conn, self._settings)
        outcome.claimed = len(claimed)
        if not claimed:
            return outcome
        states = {order_id: await self._job_state(order_id, clear=False) for order_id in claimed}
        # Read after the look: a job that finished since the claim left a result, and its
        # order is processed by now; only orders still unprocessed are touched.
        gone = [order_id for order_id, state in states.items() if state != LIVE]
        pending: set[uuid.UUID] = set()
        if gone:
            async with self._db.connect() as conn:
                pending = await still_unprocessed(conn, gone)
        origins: dict[uuid.UUID, dict[str, str]] = {}
        if pending and tracing.enabled():
            async with self._db.connect() as conn:
                origins = await new_order_trace_contexts(conn, pending)
        enqueued: list[uuid.UUID] = []
        for order_id in claimed:
            reason = LIVE
            if order_id in pending:
                reason = await self._job_state(order_id, clear=True)
            if reason != LIVE and await self._enqueue(order_id, reason, origins.get(order_id)):
                enqueued.append(order_id)
                setattr(outcome, reason, getattr(outcome, reason) + 1)
                RECONCILER_REENQUEUED.labels(reason).inc()
                logger.warning(
                    "process_order enqueued again (%s)", reason, extra={"order_id": str(order_id)}
                )
            else:
                outcome.live += 1  # a job exists, just finished, or was just made elsewhere
        if enqueued:
            async with self._db.connect() as conn:
                await record_reenqueued(conn, self._settings, enqueued)
            async with self._arq.pipeline(transaction=False) as pipe:
                for reason in (LOST, FAILED):
                    if count := getattr(outcome, reason):
                        pipe.hincrby(self.counts_key, reason, count)
                await pipe.execute()
        return outcome

    async def _enqueue(
        self, order_id: uuid.UUID, reason: str, origin: dict[str, str] | None
    ) -> bool:
        """Enqueue the order's job again, in a span of a trace of its own that links to the
        order's original trace (``origin``: its ``new_order`` row's context); the job
        continues the new one."""
        with tracing.span(
            f"{PROCESS_ORDER} reenqueue",
            kind=SpanKind.PRODUCER,
            links=tracing.link_to(origin),
            attributes={"order.id": str(order_id), "reconcile.reason": reason},
        ):
            job = await enqueue_process_order(
                self._arq, self._settings.arq_queue, str(order_id), tracing.carrier()
            )
        return job is not None

    async def _job_state(self, order_id: uuid.UUID, *, clear: bool) -> str:
        return await job_state(
            self._arq, self._settings.arq_queue, process_order_job_id(order_id), clear=clear
        )


MAX_BATCHES_PER_RUN = 20  # a backlog drains batch by batch within one run, then yields


async def reconcile_job(ctx: dict[str, Any]) -> int:
    """The cron job: full batches repeat (a bounded number); returns the jobs re-enqueued."""
    services: WorkerServices = ctx["services"]
    reconciler = Reconciler(services.settings, services.db, services.redis)
    total = 0
    try:
        for _ in range(MAX_BATCHES_PER_RUN):
            outcome = await reconciler.run()
            total += outcome.lost + outcome.failed
            if outcome.claimed < services.settings.reconcile_batch:
                break
        async with services.db.connect() as conn:
            RECONCILER_FAILING.set(await count_failing_orders(conn))
    except Exception as exc:  # noqa: BLE001 - PostgreSQL or Redis down: the next run retries
        # The class and SQLSTATE only: a driver's text can quote values (shared.http.errors).
        logger.warning("reconcile stopped: %s", describe_error(exc), extra=error_fields(exc))
    return total
