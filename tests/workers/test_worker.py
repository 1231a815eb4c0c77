"""The arq worker running process_order: events become processed orders, jobs run side by side,
and a poll claims only what it should (the outbox sweep: tests/features/test_sweep_outbox.py)."""

from __future__ import annotations

import asyncio
import time

from arq.worker import Worker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import Database
from shared.messaging.bus import EventBus
from shared.messaging.jobs import PROCESS_ORDER, create_arq_redis, process_order_job_id
from shared.messaging.outbox import mark_sent
from shared.orders.cache import OrderCache
from shared.settings import Settings
from tests.apps import with_settings
from tests.orders import order_cache
from tests.outbox import publish_staged
from tests.pipeline import OrderFactory, StartConsumer, StartWorker, processed_at, wait_for
from workers.worker import create_worker


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
    await mark_sent(Database(engine), [event.event_id for event in events])
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


async def test_a_poll_leaves_the_workers_own_running_jobs_alone(
    pipeline_settings: Settings, redis: Redis, new_order: OrderFactory
) -> None:
    """arq keeps a running job queued; a poll must not take it up again (nor spend Redis
    round trips finding out that it runs). The job here is "running" in this worker but has
    no in-progress key, so arq's own checks alone would start it a second time."""
    event = await new_order()
    job_id = process_order_job_id(event.order_id)
    arq = create_arq_redis(pipeline_settings, max_connections=2)
    await arq.enqueue_job(
        PROCESS_ORDER, str(event.order_id), _job_id=job_id, _queue_name=pipeline_settings.arq_queue
    )
    await arq.aclose()
    worker = create_worker(pipeline_settings, handle_signals=False)
    running: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    worker.tasks[job_id] = running  # type: ignore[assignment]  # what start_jobs records
    try:
        await worker.start_jobs([job_id.encode()])
        assert worker.job_counter == 0
        assert not await redis.exists(f"arq:in-progress:{job_id}")

        del worker.tasks[job_id]  # once it is not running here, arq's checks decide as before
        await worker.start_jobs([job_id.encode()])
        assert worker.job_counter == 1
        await _cancel_started(worker)  # before the job runs: this test has no services for it
        assert await redis.exists(f"arq:in-progress:{job_id}")
    finally:
        running.cancel()
        await _cancel_started(worker)
        await worker.close()


async def test_a_poll_claims_only_due_jobs_that_run_nowhere(
    pipeline_settings: Settings, redis: Redis, new_order: OrderFactory
) -> None:
    """The claim's rules are arq's: a job deferred to later, or in progress in another
    worker, is left in the queue; a due one is marked in progress and started."""
    later, elsewhere, due = [await new_order() for _ in range(3)]
    ids = {
        name: process_order_job_id(event.order_id)
        for name, event in (("later", later), ("elsewhere", elsewhere), ("due", due))
    }
    arq = create_arq_redis(pipeline_settings, max_connections=2)
    for name, event in (("later", later), ("elsewhere", elsewhere), ("due", due)):
        await arq.enqueue_job(
            PROCESS_ORDER,
            str(event.order_id),
            _job_id=ids[name],
            _queue_name=pipeline_settings.arq_queue,
            _defer_by=60 if name == "later" else None,
        )
    await arq.aclose()
    await redis.psetex(f"arq:in-progress:{ids['elsewhere']}", 60_000, b"1")
    worker = create_worker(pipeline_settings, handle_signals=False)
    try:
        await worker.start_jobs([job_id.encode() for job_id in ids.values()])
        assert set(worker.tasks) == {ids["due"]}
        assert worker.job_counter == 1
        await _cancel_started(worker)  # before the job runs: this test has no services for it
        assert await redis.exists(f"arq:in-progress:{ids['due']}")
        assert not await redis.exists(f"arq:in-progress:{ids['later']}")
        assert await redis.zcard(pipeline_settings.arq_queue) == 3
    finally:
        await _cancel_started(worker)
        await worker.close()


async def _cancel_started(worker: Worker) -> None:
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    worker.tasks.clear()  # as arq's poll does with ended tasks (close() would re-raise them)


async def test_a_poll_starts_no_more_than_max_jobs(
    pipeline_settings: Settings, redis: Redis, new_order: OrderFactory
) -> None:
    events = [await new_order() for _ in range(3)]
    ids = [process_order_job_id(event.order_id) for event in events]
    arq = create_arq_redis(pipeline_settings, max_connections=2)
    for event, job_id in zip(events, ids, strict=True):
        await arq.enqueue_job(
            PROCESS_ORDER,
            str(event.order_id),
            _job_id=job_id,
            _queue_name=pipeline_settings.arq_queue,
        )
    await arq.aclose()
    worker = create_worker(pipeline_settings, handle_signals=False, max_jobs=2)
    try:
        await worker.start_jobs([job_id.encode() for job_id in ids])
        assert set(worker.tasks) == set(ids[:2])
        assert worker.job_counter == 2
        await _cancel_started(worker)
        assert not await redis.exists(f"arq:in-progress:{ids[2]}")  # left for the next poll
    finally:
        await _cancel_started(worker)
        await worker.close()


async def test_a_killed_workers_jobs_are_free_again_within_seventy_seconds(
    pipeline_settings: Settings,
) -> None:
    """arq marks a running job in progress for the longest timeout of any of the worker's
    functions plus 10 s; a worker killed mid-job leaves the mark, and no worker or reconciler
    touches the job until it expires. A 300 s session purge once made that 310 s: a chaos run
    ended with orders unprocessed three minutes after the last fault."""
    worker = create_worker(pipeline_settings, handle_signals=False)
    try:
        assert worker.in_progress_timeout_s <= 70
    finally:
        await worker.close()
