"""What the fault tests share besides fixtures: a Redis prefix of a test's own, a timed
request, the reconciler's small settings, jobs enqueued by hand, and what a test checks once
the fault is gone: the outbox, processed orders, each job's outcome in arq, log lines."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from arq.jobs import Job, JobStatus
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.messaging.jobs import PROCESS_ORDER, create_arq_redis, process_order_job_id
from shared.models import Order, OutboxEvent
from shared.settings import Settings
from tests.apps import with_settings


def own_prefix(settings: Settings) -> str:
    """A Redis prefix of the test's own: its rate-limit counters start at zero."""
    return f"{settings.redis_prefix}faults-{secrets.token_hex(3)}:"


async def timed(request: Any) -> tuple[Any, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def unsent(engine: AsyncEngine, order_ids: list[uuid.UUID]) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.order_id.in_(order_ids), OutboxEvent.sent_at.is_(None))
        )
    return int(count or 0)


async def all_processed(engine: AsyncEngine, order_ids: list[uuid.UUID]) -> bool:
    async with engine.connect() as conn:
        done = await conn.scalar(
            select(func.count())
            .select_from(Order)
            .where(Order.id.in_(order_ids), Order.processed_at.is_not(None))
        )
    return done == len(order_ids)


async def job_outcomes(
    settings: Settings, order_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[object, int]]:
    """Each order's ``process_order`` job: (what it returned, which try it was)."""
    arq = create_arq_redis(settings, max_connections=4)
    try:
        outcomes = {}
        for order_id in order_ids:
            job = Job(
                process_order_job_id(order_id),
                arq,
                _queue_name=settings.arq_queue,
                _deserializer=arq.job_deserializer,
            )
            assert await job.status() == JobStatus.complete
            info = await job.result_info()
            assert info is not None
            outcomes[order_id] = (info.result, info.job_try)
        return outcomes
    finally:
        await arq.aclose()


RECONCILE_AFTER_S = 2.0


RECONCILE_INTERVAL_S = 1


def reconciling(settings: Settings, **changes: Any) -> Settings:
    """Small reconciler settings, and a Redis prefix of the test's own (its counters)."""
    return with_settings(
        settings,
        reconcile_after_s=RECONCILE_AFTER_S,
        reconcile_interval_s=RECONCILE_INTERVAL_S,
        redis_prefix=own_prefix(settings),
        **changes,
    )


def logged(log: Path, containing: str) -> Callable[[], Awaitable[bool]]:
    """A condition for ``wait_for``: ``log`` has a line ``containing`` this."""

    async def check() -> bool:
        return await asyncio.to_thread(lambda: log.exists() and bool(log_lines(log, containing)))

    return check


def log_lines(log: Path, containing: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if containing in line]


async def enqueue(settings: Settings, order_id: uuid.UUID) -> None:
    arq = create_arq_redis(settings, max_connections=2)
    try:
        await arq.enqueue_job(
            PROCESS_ORDER,
            str(order_id),
            _job_id=process_order_job_id(order_id),
            _queue_name=settings.arq_queue,
        )
    finally:
        await arq.aclose()


async def jobs_done(settings: Settings, order_ids: list[uuid.UUID]) -> bool:
    """Every order's job has its result stored: it returned, and logged, before that."""
    arq = create_arq_redis(settings, max_connections=2)
    try:
        for order_id in order_ids:
            job = Job(
                process_order_job_id(order_id),
                arq,
                _queue_name=settings.arq_queue,
                _deserializer=arq.job_deserializer,
            )
            if await job.status() != JobStatus.complete:
                return False
        return True
    finally:
        await arq.aclose()
