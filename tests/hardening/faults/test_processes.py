"""Processes killed mid-way (SIGKILL): a consumer before its ack, a worker in its job or
after its commit. Each event is processed once, and a commit is never made twice."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

from aio_pika.abc import AbstractChannel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import Database
from shared.messaging.bus import EventBus
from shared.messaging.jobs import PROCESS_ORDER, process_order_job_id
from shared.messaging.outbox import mark_sent
from shared.settings import Settings
from tests.apps import with_settings
from tests.hardening.faults.checks import (
    enqueue,
    job_outcomes,
    jobs_done,
    log_lines,
    logged,
)
from tests.logs import Lines
from tests.outbox import publish_staged
from tests.pipeline import (
    OrderFactory,
    StartConsumer,
    StartWorker,
    processed_at,
    ready_count,
    wait_for,
)
from tests.processes import RunModule
from tools.harness.faults import StartLink


async def test_an_event_held_by_a_consumer_killed_before_its_ack_is_processed_once(
    pipeline_settings: Settings,
    faults: StartLink,
    bus: EventBus,
    engine: AsyncEngine,
    rabbitmq: AbstractChannel,
    new_order: OrderFactory,
    run_module: RunModule,
    start_consumer: StartConsumer,
    start_worker: StartWorker,
    worker_log: Lines,
) -> None:
    # Without Redis the consumer takes the event but cannot enqueue its job, so it holds it
    # unacked: the moment to kill it.
    link = faults(pipeline_settings.redis_url)
    link.down()
    consumer = await run_module(
        "workers.consumer",
        with_settings(pipeline_settings, redis_url=link.url(pipeline_settings.redis_url)),
    )
    event = await new_order()
    assert await publish_staged(bus, engine, event)
    queue = pipeline_settings.rabbitmq_queue
    await wait_for(lambda: _ready_is(rabbitmq, queue, 0), within=20)  # delivered, not acked

    consumer.kill()
    assert await consumer.wait() == -signal.SIGKILL

    await wait_for(lambda: _ready_is(rabbitmq, queue, 1))  # the broker has it back
    await start_worker(pipeline_settings)
    await start_consumer(pipeline_settings)
    await wait_for(lambda: jobs_done(pipeline_settings, [event.order_id]), within=15)
    assert await processed_at(engine, event.order_id) is not None
    assert worker_log.count(f"Order {event.order_id} processed") == 1
    assert await job_outcomes(pipeline_settings, [event.order_id]) == {event.order_id: (True, 1)}


async def test_a_job_whose_worker_is_killed_mid_way_runs_again_and_processes_once(
    pipeline_settings: Settings,
    engine: AsyncEngine,
    redis: Redis,
    new_order: OrderFactory,
    run_module: RunModule,
    start_worker: StartWorker,
    worker_log: Lines,
    tmp_path: Path,
) -> None:
    event = await new_order()
    await mark_sent(Database(engine), [event.event_id])
    await enqueue(pipeline_settings, event.order_id)
    worker = await run_module(
        "workers.worker", with_settings(pipeline_settings, process_order_delay_s=30.0)
    )
    # arq counts the try (its retry key) just before it calls the job function.
    await wait_for(lambda: redis.exists(_tries(event.order_id)), within=20)

    worker.kill()  # in the job's 2 s wait (30 s here), before it touched the order
    assert await worker.wait() == -signal.SIGKILL
    assert await processed_at(engine, event.order_id) is None

    await _expire_lease(redis, event.order_id)
    await start_worker(pipeline_settings)
    await wait_for(lambda: jobs_done(pipeline_settings, [event.order_id]), within=15)
    assert await processed_at(engine, event.order_id) is not None
    assert worker_log.count(f"Order {event.order_id} processed") == 1
    assert log_lines(tmp_path / "workers.worker.log", f"Order {event.order_id}") == []
    assert await job_outcomes(pipeline_settings, [event.order_id]) == {event.order_id: (True, 2)}


async def test_a_job_killed_after_its_commit_runs_again_without_a_second_update(
    pipeline_settings: Settings,
    faults: StartLink,
    engine: AsyncEngine,
    redis: Redis,
    new_order: OrderFactory,
    run_module: RunModule,
    start_worker: StartWorker,
    worker_log: Lines,
    tmp_path: Path,
) -> None:
    link = faults(pipeline_settings.redis_url)
    event = await new_order()
    await mark_sent(Database(engine), [event.event_id])
    await enqueue(pipeline_settings, event.order_id)
    worker = await run_module(
        "workers.worker",
        with_settings(
            pipeline_settings,
            redis_url=link.url(pipeline_settings.redis_url),
            process_order_delay_s=1.0,
        ),
    )
    # arq logs the job's start after its last Redis call before the job (the in-progress key
    # comes earlier: a stall between the two kept the job from ever starting).
    started = f"{process_order_job_id(event.order_id)}:{PROCESS_ORDER}("
    log = tmp_path / "workers.worker.log"
    await wait_for(logged(log, started), within=20, every=0.01)
    # From here the job cannot report back: its cache write and arq's bookkeeping hang (1 s
    # socket timeout each), which leaves time to kill it between its commit and its end.
    link.stall()
    first = await wait_for(lambda: processed_at(engine, event.order_id), every=0.01)

    worker.kill()
    assert await worker.wait() == -signal.SIGKILL

    await _expire_lease(redis, event.order_id)
    await start_worker(pipeline_settings)
    await wait_for(lambda: jobs_done(pipeline_settings, [event.order_id]), within=15)
    assert await processed_at(engine, event.order_id) == first  # not set a second time
    assert worker_log.count(f"Order {event.order_id} was already processed") == 1
    assert worker_log.count(f"Order {event.order_id} processed") == 0
    assert await job_outcomes(pipeline_settings, [event.order_id]) == {event.order_id: (False, 2)}


async def _ready_is(channel: AbstractChannel, queue: str, count: int) -> bool:
    return await ready_count(channel, queue) == count


def _tries(order_id: uuid.UUID) -> str:
    return f"arq:retry:{process_order_job_id(order_id)}"


def _in_progress(order_id: uuid.UUID) -> str:
    return f"arq:in-progress:{process_order_job_id(order_id)}"


async def _expire_lease(redis: Redis, order_id: uuid.UUID) -> None:
    """What time does to a dead worker's lease: arq keeps the job queued but marked in
    progress for the job timeout + 10 s (40 s here); another worker runs it after that."""
    assert await redis.delete(_in_progress(order_id)) == 1
