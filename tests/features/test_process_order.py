"""process_order, the job: it marks an order processed once, logs it, and refreshes its cached
view (the worker that runs it: tests/workers/test_worker.py)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from features.process_order.job import process_order
from features.process_order.queries import MARK_PROCESSED, mark_processed_once
from shared.db import Database
from shared.messaging.events import ORDER_PROCESSED, OrderProcessedEvent
from shared.messaging.outbox import change_values, mark_sent
from shared.models import OutboxEvent
from shared.orders.cache import OrderCache
from shared.settings import Settings
from tests.events import bound_queue, events_of
from tests.orders import order_cache
from tests.pipeline import OrderFactory, processed_at
from tests.plans import plan_after_filling
from workers.worker import shutdown, startup


@pytest.fixture
async def worker_ctx(pipeline_settings: Settings, redis: Redis) -> AsyncIterator[dict[str, Any]]:
    """What arq hands a job: our settings and Redis, plus what ``startup`` opens."""
    ctx: dict[str, Any] = {"settings": pipeline_settings, "redis": redis, "job_try": 1}
    await startup(ctx)
    yield ctx
    await shutdown(ctx)


async def test_process_order_is_idempotent(
    worker_ctx: dict[str, Any], engine: AsyncEngine, new_order: OrderFactory
) -> None:
    event = await new_order()
    await mark_sent(Database(engine), [event.event_id])
    assert await process_order(worker_ctx, str(event.order_id)) is True
    first = await processed_at(engine, event.order_id)

    assert await process_order(worker_ctx, str(event.order_id)) is False

    assert first is not None
    assert await processed_at(engine, event.order_id) == first


async def test_process_order_logs_order_processed_with_its_id(
    worker_ctx: dict[str, Any],
    engine: AsyncEngine,
    new_order: OrderFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = await new_order()
    await mark_sent(Database(engine), [event.event_id])

    with caplog.at_level(logging.INFO):
        await process_order(worker_ctx, str(event.order_id))

    [record] = [r for r in caplog.records if r.getMessage().endswith(" processed")]
    assert record.getMessage() == f"Order {event.order_id} processed"
    assert record.name == "features.process_order.job"  # the module that wrote it
    assert record.levelno == logging.INFO
    assert record.order_id == str(event.order_id)  # type: ignore[attr-defined]


async def test_process_order_recaches_an_order_already_processed(
    worker_ctx: dict[str, Any],
    pipeline_settings: Settings,
    engine: AsyncEngine,
    redis: Redis,
    new_order: OrderFactory,
) -> None:
    """A run cut off after its commit but before its cache write is repaired by the retry."""
    event = await new_order()
    await mark_sent(Database(engine), [event.event_id])
    await process_order(worker_ctx, str(event.order_id))
    cache = order_cache(pipeline_settings, redis)
    await redis.delete(cache.key(event.order_id), cache.version_key(event.order_id))

    await process_order(worker_ctx, str(event.order_id))

    cached = await cache.get_raw(event.order_id)
    assert cached is not None
    assert OrderCache.decode(cached).processed_at == await processed_at(engine, event.order_id)


async def test_process_order_of_a_missing_order_does_nothing(worker_ctx: dict[str, Any]) -> None:
    assert await process_order(worker_ctx, str(uuid.uuid4())) is False


async def test_processing_publishes_one_order_processed_event_and_a_rerun_none(
    worker_ctx: dict[str, Any],
    pipeline_settings: Settings,
    engine: AsyncEngine,
    rabbitmq: aio_pika.abc.AbstractChannel,
    new_order: OrderFactory,
) -> None:
    """The worker's relay publishes what its job staged; a job that finds the order already
    processed (a redelivery, the reconciler) stages nothing."""
    event = await new_order()
    await mark_sent(Database(engine), [event.event_id])
    assert await worker_ctx["services"].bus.wait_ready(within=10)
    async with bound_queue(rabbitmq, pipeline_settings.rabbitmq_exchange, ORDER_PROCESSED) as queue:
        assert await process_order(worker_ctx, str(event.order_id)) is True
        assert await process_order(worker_ctx, str(event.order_id)) is False

        events = await events_of(queue, event.order_id)

    assert len(events) == 1
    published = events[0]
    assert isinstance(published, OrderProcessedEvent)
    assert published.user_id == event.user_id
    assert published.processed_at == await processed_at(engine, event.order_id)


async def test_a_processing_rolled_back_stages_no_event(
    engine: AsyncEngine, new_order: OrderFactory
) -> None:
    event = await new_order()

    async with engine.connect() as conn:
        transaction = await conn.begin()
        marked = await mark_processed_once(conn, event.order_id)
        assert marked is not None
        assert marked[1] is not None  # it set processed_at and staged its event...
        await transaction.rollback()  # ...then the transaction failed

    async with engine.connect() as conn:
        staged = await conn.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(
                OutboxEvent.order_id == event.order_id, OutboxEvent.event_type == ORDER_PROCESSED
            )
        )
    assert staged == 0
    assert await processed_at(engine, event.order_id) is None


async def test_marking_processed_reads_the_order_by_its_key_not_the_reconcilers_index(
    engine: AsyncEngine,
) -> None:
    """With statistics as in production (every order processed when ANALYZE last looked, so
    the reconciler's partial index looks empty), the job's statement finds its order by the
    primary key. A scan of ix_orders_unprocessed would read every unprocessed order, and an
    entry for every one processed since the last vacuum, on every job."""
    statement = MARK_PROCESSED.statement.params(order_id=uuid.uuid4(), **change_values())
    plan = await plan_after_filling(
        engine,
        "INSERT INTO orders (id, user_id, items, total_price, status, created_at, updated_at,"
        " processed_at)"
        " SELECT gen_random_uuid(), :user, '[]', 1, 'PENDING', now(), now(), now()"
        " FROM generate_series(1, 20000)",
        statement,
    )
    assert "ix_orders_unprocessed" not in plan, plan
    assert "pk_orders" in plan, plan
