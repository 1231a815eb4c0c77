"""The outbox sweep (features/sweep_outbox/), against real PostgreSQL and RabbitMQ on a
database of its own (the session's holds other tests' unsent rows): what the relay could not
publish goes out, once, and is marked sent; what is still the relay's is left alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from features.patch_order.queries import move_status
from features.process_order.queries import mark_processed_once
from features.sweep_outbox.job import sweep_outbox, sweep_outbox_job
from shared.db import Database, create_engine
from shared.messaging.bus import EventBus
from shared.messaging.events import ORDER_PROCESSED, ORDER_STATUS_CHANGED
from shared.messaging.outbox import mark_sent, marking_sent
from shared.models import OrderStatus, OutboxEvent
from shared.settings import Settings
from tests.apps import with_settings
from tests.events import bound_queue, events_of
from tests.outbox import publish_staged
from tests.pipeline import (
    OrderFactory,
    StartConsumer,
    StartWorker,
    order_factory,
    processed_at,
    ready_count,
    wait_for,
)
from tests.plans import plan_after_filling
from tools.harness.faults import via
from workers.worker import shutdown, startup


@pytest.fixture
async def db(own_database: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(own_database)
    yield engine
    await engine.dispose()


@pytest.fixture
def make_order(db: AsyncEngine) -> OrderFactory:
    return order_factory(db)


async def sent_at(engine: AsyncEngine, event_id: uuid.UUID) -> object:
    async with engine.connect() as conn:
        return await conn.scalar(select(OutboxEvent.sent_at).where(OutboxEvent.id == event_id))


async def test_an_unsent_event_is_published_once_and_marked_sent(
    own_database: Settings,
    db: AsyncEngine,
    make_order: OrderFactory,
    bus: EventBus,
    rabbitmq: aio_pika.abc.AbstractChannel,
) -> None:
    event = await make_order()

    assert await sweep_outbox(bus, Database(db), older_than_s=0.0) == 1
    assert await sweep_outbox(bus, Database(db), older_than_s=0.0) == 0  # sent: not again

    assert await sent_at(db, event.event_id) is not None
    await wait_for(lambda: ready_count(rabbitmq, own_database.rabbitmq_queue))
    assert await ready_count(rabbitmq, own_database.rabbitmq_queue) == 1


async def test_a_fresh_event_is_left_to_the_relay(
    db: AsyncEngine, make_order: OrderFactory, bus: EventBus
) -> None:
    event = await make_order()

    assert await sweep_outbox(bus, Database(db), older_than_s=60.0) == 0

    assert await sent_at(db, event.event_id) is None


async def test_nothing_is_touched_while_the_bus_is_down(
    own_database: Settings, db: AsyncEngine, make_order: OrderFactory
) -> None:
    event = await make_order()
    not_connected = EventBus(own_database)

    assert await sweep_outbox(not_connected, Database(db), older_than_s=0.0) == 0

    assert await sent_at(db, event.event_id) is None
    async with db.connect() as conn:  # not even counted as a failed attempt: never tried
        attempts = await conn.scalar(
            select(OutboxEvent.attempts).where(OutboxEvent.id == event.event_id)
        )
    assert attempts == 0


async def test_the_job_drains_the_backlog_and_records_it(
    own_database: Settings, db: AsyncEngine, make_order: OrderFactory, redis: Redis
) -> None:
    events = [await make_order() for _ in range(3)]
    ctx: dict[str, Any] = {"settings": own_database, "redis": redis}
    await startup(ctx)  # the worker's services, as arq's start-up builds them
    try:
        assert await ctx["services"].bus.wait_ready(within=10)
        assert await sweep_outbox_job(ctx) == 3
    finally:
        await shutdown(ctx)

    for event in events:
        assert await sent_at(db, event.event_id) is not None
    assert REGISTRY.get_sample_value("orders_outbox_backlog") == 0


async def test_unsent_outbox_event_is_swept_then_processed(
    pipeline_settings: Settings,
    engine: AsyncEngine,
    new_order: OrderFactory,
    start_consumer: StartConsumer,
    start_worker: StartWorker,
) -> None:
    """The worker's cron runs the sweep: an event the relay could not publish still gets its
    order processed."""
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


async def test_status_and_processed_events_left_by_a_crashed_relay_go_out_once_by_their_names(
    own_database: Settings,
    db: AsyncEngine,
    make_order: OrderFactory,
    bus: EventBus,
    rabbitmq: aio_pika.abc.AbstractChannel,
) -> None:
    """The changes committed with their events, and the process died before its relay
    published them (nothing here submits them): the sweep publishes each once, with its
    ``event_type`` as routing key, and no one has to bind a queue for them first."""
    created = await make_order()
    await publish_staged(bus, db, created)
    async with db.connect() as conn:
        moved = await move_status(
            conn, created.order_id, created.user_id, OrderStatus.PAID, [OrderStatus.PENDING]
        )
        marked = await mark_processed_once(conn, created.order_id)
        await conn.commit()
    assert moved is not None
    assert marked is not None
    assert marked[1] is not None
    exchange = own_database.rabbitmq_exchange
    async with (
        bound_queue(rabbitmq, exchange, ORDER_STATUS_CHANGED) as status_queue,
        bound_queue(rabbitmq, exchange, ORDER_PROCESSED) as processed_queue,
    ):
        assert await sweep_outbox(bus, Database(db), older_than_s=0.0) == 2
        assert await sweep_outbox(bus, Database(db), older_than_s=0.0) == 0  # sent: not again

        status_events = await events_of(status_queue, created.order_id)
        processed_events = await events_of(processed_queue, created.order_id, within=0.5)

    assert [event.event_id for event in status_events] == [moved[1].event_id]
    assert [event.event_id for event in processed_events] == [marked[1].event_id]
    assert await sent_at(db, moved[1].event_id) is not None
    assert await sent_at(db, marked[1].event_id) is not None


async def test_an_event_no_queue_is_bound_for_is_swept_once_not_forever(
    db: AsyncEngine, make_order: OrderFactory, bus: EventBus
) -> None:
    """No service has bound a queue for ``order_status_changed`` yet: the broker confirms and
    drops it, and it is marked sent (``new_order``, ``mandatory``, would stay)."""
    created = await make_order()
    await publish_staged(bus, db, created)
    async with db.connect() as conn:
        moved = await move_status(
            conn, created.order_id, created.user_id, OrderStatus.PAID, [OrderStatus.PENDING]
        )
        await conn.commit()
    assert moved is not None

    assert await sweep_outbox(bus, Database(db), older_than_s=0.0) == 1

    assert await sent_at(db, moved[1].event_id) is not None


async def test_marking_sent_finds_the_rows_by_their_key_not_the_unsent_index(
    db: AsyncEngine,
) -> None:
    """With statistics as in production (every row sent when ANALYZE looked), the relay's and
    the sweep's UPDATE reads the primary key, not a partial index of the unsent rows, which
    holds an entry for every row sent since the last vacuum."""
    plan = await plan_after_filling(
        db,
        "WITH made AS (INSERT INTO orders (id, user_id, items, total_price, status,"
        " created_at, updated_at)"
        " SELECT gen_random_uuid(), :user, '[]', 1, 'PENDING', now(), now()"
        " FROM generate_series(1, 20000) RETURNING id)"
        " INSERT INTO outbox (id, event_type, order_id, payload, sent_at)"
        " SELECT gen_random_uuid(), 'new_order', id, '\\x7b7d', now() FROM made",
        marking_sent([uuid.uuid4(), uuid.uuid4()]),
    )
    assert "ix_outbox_unsent" not in plan, plan
    assert "pk_outbox" in plan, plan


async def test_marking_sent_again_keeps_the_first_time(
    db: AsyncEngine, make_order: OrderFactory
) -> None:
    event = await make_order()
    await mark_sent(Database(db), [event.event_id])
    first = await sent_at(db, event.event_id)
    await mark_sent(Database(db), [event.event_id])
    assert first is not None
    assert await sent_at(db, event.event_id) == first
