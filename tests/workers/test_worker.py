"""The arq worker running process_order: events become processed orders, jobs run side by side,
and the sweeper publishes what the API could not."""

from __future__ import annotations

import time
import uuid

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus import EventBus
from shared.jobs import PROCESS_ORDER, create_arq_redis, process_order_job_id
from shared.models import OutboxEvent
from shared.order_cache import OrderCache
from shared.outbox import mark_sent
from shared.settings import Settings
from tests.apps import with_settings
from tests.faults import via
from tests.orders import order_cache
from tests.outbox import publish_staged
from tests.pipeline import OrderFactory, StartConsumer, StartWorker, processed_at, wait_for


async def test_published_event_gets_the_order_processed_and_cached(
    pipeline_settings: Settings,
    bus: EventBus,
    engine: AsyncEngine,
    redis: Redis,
    new_order: OrderFactory,
    start_consumer: StartConsumer,
    start_worker: StartWorker,
) -> None:
    await start_worker(pipeline_settings)
    await start_consumer(pipeline_settings)
    event = await new_order()

    assert await publish_staged(bus, engine, event)

    done = await wait_for(lambda: processed_at(engine, event.order_id))
    cached = await order_cache(pipeline_settings, redis).get_raw(event.order_id)
    assert cached is not None
    assert OrderCache.decode(cached).processed_at == done


async def test_worker_runs_process_order_jobs_concurrently(
    pipeline_settings: Settings,
    engine: AsyncEngine,
    new_order: OrderFactory,
    start_worker: StartWorker,
) -> None:
    slow = with_settings(pipeline_settings, process_order_delay_s=1.0)
    events = [await new_order() for _ in range(5)]
    await mark_sent(engine, [event.event_id for event in events])
    arq = create_arq_redis(slow, max_connections=4)
    for event in events:
        await arq.enqueue_job(
            PROCESS_ORDER,
            str(event.order_id),
            _job_id=process_order_job_id(event.order_id),
            _queue_name=slow.arq_queue,
        )
    await arq.aclose()

    started = time.monotonic()
    await start_worker(slow)

    async def all_processed() -> bool:
        done = [await processed_at(engine, event.order_id) for event in events]
        return all(done)

    await wait_for(all_processed)
    assert time.monotonic() - started < 2.5  # five 1 s jobs, overlapping


async def test_unsent_outbox_event_is_swept_then_processed(
    pipeline_settings: Settings,
    engine: AsyncEngine,
    new_order: OrderFactory,
    start_consumer: StartConsumer,
    start_worker: StartWorker,
) -> None:
    unreachable = with_settings(
        pipeline_settings, rabbitmq_url=via(pipeline_settings.rabbitmq_url, 1)
    )
    event = await new_order()
    assert not await publish_staged(EventBus(unreachable), engine, event)
    assert await sent_at(engine, event.event_id) is None

    await start_consumer(pipeline_settings)
    await start_worker(pipeline_settings)

    await wait_for(lambda: processed_at(engine, event.order_id), within=15)
    assert await sent_at(engine, event.event_id) is not None


async def sent_at(engine: AsyncEngine, event_id: uuid.UUID) -> object:
    async with engine.connect() as conn:
        return await conn.scalar(select(OutboxEvent.sent_at).where(OutboxEvent.id == event_id))
