"""Fixtures for the event pipeline: real RabbitMQ, Redis and PostgreSQL, per-test names.

Each test gets its own exchange, queues and arq queue (``pipeline_settings``), so a consumer
or worker started by one test never sees another test's messages or jobs. arq keeps its job
keys outside our Redis prefix (``arq:job:<id>`` …), so they are removed here explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest
from arq.worker import Worker
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from migrations.admin import drop_database, migrate
from shared.db import create_engine
from shared.messaging.bus import EventBus, Topology
from shared.messaging.jobs import process_order_job_id
from shared.models import Order
from shared.redis import create_redis
from shared.settings import Settings
from tests.apps import with_settings
from tests.pipeline import (
    OrderFactory,
    RunningConsumer,
    StartConsumer,
    StartWorker,
    delete_arq_keys,
    order_factory,
)
from tools.harness.faults import FaultyLink, StartLink, target_of
from workers.consumer import run_consumer
from workers.worker import create_worker

STOP_WITHIN_S = 10  # a worker stopped by a test fixture; its jobs take 2 s


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    db = create_engine(settings)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = create_redis(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session", autouse=True)
async def _remove_arq_keys(
    settings: Settings, engine: AsyncEngine, redis: Redis
) -> AsyncIterator[None]:
    """After the run: every order's job keys, and the cron's keys named after our arq queues."""
    yield
    async with engine.connect() as conn:
        order_ids = (await conn.scalars(select(Order.id))).all()
    await delete_arq_keys(redis, [process_order_job_id(order_id) for order_id in order_ids])
    async for key in redis.scan_iter(match=f"arq:*{settings.arq_queue}*", count=1000):
        await redis.delete(key)


@pytest.fixture
async def pipeline_settings(settings: Settings, redis: Redis) -> AsyncIterator[Settings]:
    """This test's own topology and arq queue; fast jobs and a sweeper that runs every second."""
    tag = secrets.token_hex(3)
    test_settings = with_settings(
        settings,
        rabbitmq_exchange=f"{settings.rabbitmq_exchange}.{tag}",
        rabbitmq_queue=f"{settings.rabbitmq_queue}.{tag}",
        arq_queue=f"{settings.arq_queue}:{tag}",
        process_order_delay_s=0.05,
        outbox_sweep_interval_s=1,
        outbox_sweep_age_s=0.0,
    )
    yield test_settings
    job_ids = [job_id.decode() for job_id in await redis.zrange(test_settings.arq_queue, 0, -1)]
    await delete_arq_keys(redis, job_ids)
    await redis.delete(test_settings.arq_queue)
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        await Topology(test_settings).delete(await connection.channel())


@pytest.fixture
async def rabbitmq(settings: Settings) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A plain channel for inspecting queues and publishing raw messages."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        yield await connection.channel()


@pytest.fixture
def new_order(engine: AsyncEngine) -> OrderFactory:
    return order_factory(engine)


@pytest.fixture
async def own_database(pipeline_settings: Settings, redis: Redis) -> AsyncIterator[Settings]:
    """``pipeline_settings`` on a database of the test's own, migrated, dropped after it.

    For the reconciler: it takes up every old unprocessed order it finds, and the session's
    database is full of them (the API tests' orders, never processed). The jobs it made are
    removed with the database.
    """
    url = make_url(pipeline_settings.database_url)
    test_settings = with_settings(
        pipeline_settings,
        database_url=url.set(database=f"{url.database}_{secrets.token_hex(3)}").render_as_string(
            hide_password=False
        ),
    )
    await asyncio.to_thread(migrate, test_settings.database_url)
    yield test_settings
    db = create_engine(test_settings)
    try:
        async with db.connect() as conn:
            order_ids = (await conn.scalars(select(Order.id))).all()
    finally:
        await db.dispose()
    await delete_arq_keys(redis, [process_order_job_id(order_id) for order_id in order_ids])
    await drop_database(test_settings.database_url)


@pytest.fixture
async def bus(pipeline_settings: Settings) -> AsyncIterator[EventBus]:
    """A connected publisher for this test's topology."""
    event_bus = EventBus(pipeline_settings)
    await event_bus.start()
    assert await event_bus.wait_ready(within=10), "RabbitMQ did not connect"
    yield event_bus
    await event_bus.stop()


@pytest.fixture
def faults() -> Iterator[StartLink]:
    """``faults(url)`` starts a ``FaultyLink`` to the server in ``url`` (a test can make it
    refuse, cut or stall connections); all close after the test.

    Request it before ``start_app`` (the consumer and worker fixtures depend on it), so apps,
    consumers and workers stop while their links still exist.
    """
    links: list[FaultyLink] = []

    def start(url: str) -> FaultyLink:
        link = FaultyLink(target_of(url))
        link.start()
        links.append(link)
        return link

    yield start
    for link in links:
        link.close()


@pytest.fixture
async def start_consumer(
    pipeline_settings: Settings, faults: StartLink
) -> AsyncIterator[StartConsumer]:
    """Run ``run_consumer`` as a task. All stop after the test, before its topology and proxies
    are removed."""
    running: list[RunningConsumer] = []

    async def start(consumer_settings: Settings) -> RunningConsumer:
        stop, started = asyncio.Event(), asyncio.Event()
        consumer = RunningConsumer(
            asyncio.create_task(run_consumer(consumer_settings, stop, started)), stop
        )
        running.append(consumer)
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({waiter, consumer.task}, timeout=15, return_when="FIRST_COMPLETED")
        waiter.cancel()
        if consumer.task.done():
            consumer.task.result()  # raise what stopped it
        assert started.is_set(), "consumer did not start"
        return consumer

    yield start
    for consumer in running:
        await consumer.stop()


@pytest.fixture
async def start_worker(
    pipeline_settings: Settings, faults: StartLink
) -> AsyncIterator[StartWorker]:
    """Run an arq ``Worker`` in-process (no signal handlers, fast polling) until the test ends."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(worker_settings: Settings) -> Worker:
        worker = create_worker(worker_settings, handle_signals=False, poll_delay=0.05)
        task = asyncio.create_task(worker.async_run())
        running.append((worker, task))
        return worker

    yield start
    for worker, task in running:
        # Drain, then close. In burst mode with no job left to start, arq's poll loop waits for
        # the jobs in flight and returns. Closing a running worker raced with it instead:
        # close() sets the pool to None under a loop still polling ('NoneType' object has no
        # attribute 'zrangebyscore'), and cancels jobs that are reporting back.
        worker.burst, worker.max_burst_jobs = True, 0
        await asyncio.wait({task}, timeout=STOP_WITHIN_S)
        if not task.done():  # a job stuck on a link a test cut: cancel it, as close() would
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_WITHIN_S)
        assert task.done(), "the worker did not stop"
        with contextlib.suppress(asyncio.CancelledError):
            task.result()
        await worker.close()
