"""process_order, the job: it marks an order processed once, logs it, and refreshes its cached
view (the worker that runs it: tests/workers/test_worker.py)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from features.process_order.job import process_order
from shared.messaging.outbox import mark_sent
from shared.orders.cache import OrderCache
from shared.settings import Settings
from tests.orders import order_cache
from tests.pipeline import OrderFactory, processed_at
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
    await mark_sent(engine, [event.event_id])
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
    await mark_sent(engine, [event.event_id])

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
    await mark_sent(engine, [event.event_id])
    await process_order(worker_ctx, str(event.order_id))
    cache = order_cache(pipeline_settings, redis)
    await redis.delete(cache.key(event.order_id), cache.version_key(event.order_id))

    await process_order(worker_ctx, str(event.order_id))

    cached = await cache.get_raw(event.order_id)
    assert cached is not None
    assert OrderCache.decode(cached).processed_at == await processed_at(engine, event.order_id)


async def test_process_order_of_a_missing_order_does_nothing(worker_ctx: dict[str, Any]) -> None:
    assert await process_order(worker_ctx, str(uuid.uuid4())) is False
