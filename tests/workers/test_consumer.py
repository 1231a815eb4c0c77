"""The consumer: new_order events in RabbitMQ become exactly one arq job per order."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aio_pika.abc import AbstractChannel
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.messaging.bus import EventBus, Topology
from shared.messaging.events import ORDER_PROCESSED, ORDER_STATUS_CHANGED, encode_event
from shared.messaging.jobs import (
    PROCESS_ORDER,
    create_arq_redis,
    deserialize_job,
    enqueue_process_order,
    process_order_job_id,
)
from shared.settings import Settings
from tests.apps import with_settings
from tests.outbox import publish_staged
from tests.pipeline import (
    OrderFactory,
    StartConsumer,
    StartWorker,
    processed_at,
    ready_count,
    wait_for,
)
from tools.harness.faults import StartLink, via


async def queued_jobs(redis: Redis, settings: Settings) -> list[str]:
    """The process_order jobs waiting in this test's arq queue (the sweeper's cron aside)."""
    ids = [job_id.decode() for job_id in await redis.zrange(settings.arq_queue, 0, -1)]
    return [job_id for job_id in ids if job_id.startswith(PROCESS_ORDER)]


async def only_job_for(redis: Redis, settings: Settings, order_id: uuid.UUID) -> bool:
    return await queued_jobs(redis, settings) == [process_order_job_id(order_id)]


async def test_event_becomes_a_process_order_job(
    pipeline_settings: Settings,
    bus: EventBus,
    engine: AsyncEngine,
    redis: Redis,
    new_order: OrderFactory,
    start_consumer: StartConsumer,
) -> None:
    await start_consumer(pipeline_settings)
    event = await new_order()

    assert await publish_staged(bus, engine, event)

    await wait_for(lambda: only_job_for(redis, pipeline_settings, event.order_id))


async def test_duplicate_event_makes_no_second_job(
    pipeline_settings: Settings,
    bus: EventBus,
    engine: AsyncEngine,
    redis: Redis,
    rabbitmq: AbstractChannel,
    new_order: OrderFactory,
    start_consumer: StartConsumer,
    start_worker: StartWorker,
) -> None:
    worker = await start_worker(pipeline_settings)
    consumer = await start_consumer(pipeline_settings)
    event = await new_order()
    assert await publish_staged(bus, engine, event)
    await wait_for(lambda: processed_at(engine, event.order_id))
    job = Job(process_order_job_id(event.order_id), worker.pool, _deserializer=deserialize_job)
    first = await wait_for(job.result_info)

    await bus.publish(encode_event(event), message_id=str(event.event_id))  # a redelivery
    await wait_for(lambda: _ready_is(rabbitmq, pipeline_settings.rabbitmq_queue, 0))
    await consumer.stop()  # the duplicate was handled and acked (nothing went back)
    await asyncio.sleep(0.3)  # time for a second job to be picked up, were there one

    assert await ready_count(rabbitmq, pipeline_settings.rabbitmq_queue) == 0
    assert await queued_jobs(redis, pipeline_settings) == []
    last = await job.result_info()
    assert last is not None
    assert (last.enqueue_time, last.result) == (first.enqueue_time, True)


async def test_unparseable_message_goes_to_the_dead_letter_queue(
    pipeline_settings: Settings,
    bus: EventBus,
    redis: Redis,
    rabbitmq: AbstractChannel,
    start_consumer: StartConsumer,
) -> None:
    await start_consumer(pipeline_settings)
    junk = b'{"type": "new_order", "order_id": "not-a-uuid"}'

    await bus.publish(junk, message_id="junk-1")

    dead = await rabbitmq.declare_queue(Topology(pipeline_settings).dead_queue, passive=True)
    message = await wait_for(lambda: dead.get(fail=False, timeout=5))
    await message.ack()
    assert message.body == junk
    deaths = message.headers["x-death"]
    assert isinstance(deaths, list)
    assert deaths[0]["reason"] == "rejected"
    assert await queued_jobs(redis, pipeline_settings) == []


async def test_status_events_never_reach_the_consumer(
    pipeline_settings: Settings,
    bus: EventBus,
    engine: AsyncEngine,
    redis: Redis,
    rabbitmq: AbstractChannel,
    new_order: OrderFactory,
    start_consumer: StartConsumer,
) -> None:
    """Its queue is bound by ``new_order`` alone: the other events on the exchange (bodies it
    could not parse, so dead-lettered had they reached it) pass it by. Only the event logs'
    feed (its own queue, bound by every event) met them, and dead-lettered them."""
    await start_consumer(pipeline_settings)
    for event_type in (ORDER_STATUS_CHANGED, ORDER_PROCESSED):
        await bus.publish(
            b"{}", message_id=f"not-for-the-consumer-{event_type}", routing_key=event_type
        )
    event = await new_order()

    assert await publish_staged(bus, engine, event)  # published after them: handled after them

    await wait_for(lambda: only_job_for(redis, pipeline_settings, event.order_id))
    topology = Topology(pipeline_settings)
    assert await ready_count(rabbitmq, pipeline_settings.rabbitmq_queue) == 0
    await wait_for(lambda: dead_count(rabbitmq, topology.dead_queue, 2))
    dead = await rabbitmq.declare_queue(topology.dead_queue, passive=True)
    for _ in range(2):
        message = await dead.get(timeout=5)
        await message.ack()
        deaths = message.headers["x-death"]
        assert isinstance(deaths, list)
        assert isinstance(deaths[0], dict)
        assert deaths[0]["queue"] == topology.feed_queue


async def dead_count(rabbitmq: AbstractChannel, queue: str, count: int) -> bool:
    return await ready_count(rabbitmq, queue) == count


async def test_consumer_keeps_consuming_after_its_connection_drops(
    pipeline_settings: Settings,
    bus: EventBus,
    engine: AsyncEngine,
    redis: Redis,
    new_order: OrderFactory,
    start_consumer: StartConsumer,
    faults: StartLink,
) -> None:
    proxy = faults(pipeline_settings.rabbitmq_url)
    via_proxy = with_settings(
        pipeline_settings, rabbitmq_url=via(pipeline_settings.rabbitmq_url, proxy.port)
    )
    await start_consumer(via_proxy)
    before = await new_order()
    assert await publish_staged(bus, engine, before)
    await wait_for(lambda: _queued(redis, pipeline_settings, before.order_id))

    proxy.cut()
    after = await new_order()
    assert await publish_staged(bus, engine, after)

    await wait_for(lambda: _queued(redis, pipeline_settings, after.order_id), within=15)
    assert proxy.accepted >= 2  # it really reconnected


async def test_event_is_not_acked_while_redis_is_unreachable(
    pipeline_settings: Settings,
    bus: EventBus,
    engine: AsyncEngine,
    redis: Redis,
    rabbitmq: AbstractChannel,
    new_order: OrderFactory,
    start_consumer: StartConsumer,
    faults: StartLink,
) -> None:
    proxy = faults(pipeline_settings.redis_url)
    proxy.refusing = True
    no_redis = with_settings(
        pipeline_settings, redis_url=via(pipeline_settings.redis_url, proxy.port)
    )
    consumer = await start_consumer(no_redis)
    event = await new_order()
    assert await publish_staged(bus, engine, event)
    await wait_for(lambda: _ready_is(rabbitmq, pipeline_settings.rabbitmq_queue, 0))
    await asyncio.sleep(1)  # enqueue attempts fail meanwhile

    await consumer.stop()

    # Held, never acked: the stopped consumer's channel hands the event back to the queue.
    await wait_for(lambda: _ready_is(rabbitmq, pipeline_settings.rabbitmq_queue, 1))
    assert await queued_jobs(redis, pipeline_settings) == []


async def test_consumer_enqueues_held_events_once_redis_is_back(
    pipeline_settings: Settings,
    bus: EventBus,
    engine: AsyncEngine,
    redis: Redis,
    rabbitmq: AbstractChannel,
    new_order: OrderFactory,
    start_consumer: StartConsumer,
    faults: StartLink,
) -> None:
    proxy = faults(pipeline_settings.redis_url)
    proxy.refusing = True
    flaky_redis = with_settings(
        pipeline_settings, redis_url=via(pipeline_settings.redis_url, proxy.port)
    )
    consumer = await start_consumer(flaky_redis)
    event = await new_order()
    assert await publish_staged(bus, engine, event)
    await wait_for(lambda: _ready_is(rabbitmq, pipeline_settings.rabbitmq_queue, 0))
    await asyncio.sleep(1)
    assert await queued_jobs(redis, pipeline_settings) == []

    proxy.refusing = False

    await wait_for(lambda: _queued(redis, pipeline_settings, event.order_id), within=15)
    await consumer.stop()
    assert await ready_count(rabbitmq, pipeline_settings.rabbitmq_queue) == 0  # acked


async def _ready_is(channel: AbstractChannel, queue: str, count: int) -> bool:
    return await ready_count(channel, queue) == count


async def _queued(redis: Redis, settings: Settings, order_id: object) -> bool:
    return process_order_job_id(str(order_id)) in await queued_jobs(redis, settings)


async def test_the_enqueue_stores_what_arqs_own_enqueue_stores(
    pipeline_settings: Settings, redis: Redis
) -> None:
    """One script in place of arq's WATCH/EXISTS/MULTI: the same record, lifetime and queue
    entry, so arq's worker runs it as its own."""
    arq = create_arq_redis(pipeline_settings, max_connections=2)
    ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        job = await enqueue_process_order(arq, pipeline_settings.arq_queue, ours)
        assert job is not None
        assert job.job_id == process_order_job_id(ours)
        await arq.enqueue_job(
            PROCESS_ORDER,
            theirs,
            _job_id=process_order_job_id(theirs),
            _queue_name=pipeline_settings.arq_queue,
        )
        records = {}
        for order_id in (ours, theirs):
            key = job_key_prefix + process_order_job_id(order_id)
            record = deserialize_job(await redis.get(key))
            assert record.pop("et") == pytest.approx(time.time() * 1000, abs=5_000)
            records[order_id] = record
            assert await redis.pttl(key) == pytest.approx(arq.expires_extra_ms, abs=5_000)
            score = await redis.zscore(pipeline_settings.arq_queue, process_order_job_id(order_id))
            assert score == pytest.approx(time.time() * 1000, abs=5_000)
        assert records[ours] == {**records[theirs], "a": [ours]}
        assert records[ours]["f"] == PROCESS_ORDER
        info = await job.info()
        assert info is not None
        assert list(info.args) == [ours]  # JSON keeps no tuples, for arq's jobs either
    finally:
        await arq.aclose()


async def test_the_enqueue_makes_no_second_job_while_a_job_or_its_result_exists(
    pipeline_settings: Settings, redis: Redis
) -> None:
    arq = create_arq_redis(pipeline_settings, max_connections=2)
    queued, finished = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        assert await enqueue_process_order(arq, pipeline_settings.arq_queue, queued) is not None
        assert await enqueue_process_order(arq, pipeline_settings.arq_queue, queued) is None
        await redis.set(result_key_prefix + process_order_job_id(finished), b"{}", ex=60)
        assert await enqueue_process_order(arq, pipeline_settings.arq_queue, finished) is None
        assert await queued_jobs(redis, pipeline_settings) == [process_order_job_id(queued)]
    finally:
        await arq.aclose()
