"""Faults injected between the service and its dependencies: nothing lost, nothing stale.

Each test puts a ``FaultyLink`` (tests/faults.py) between an app, consumer or worker and the
real PostgreSQL, Redis or RabbitMQ, then refuses, cuts or stalls it; the shared servers are
never touched.
"""

from __future__ import annotations

import secrets
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractChannel
from arq.jobs import Job, JobStatus
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app import create_app
from shared.bus import EventBus
from shared.events import mark_sent, publish_staged
from shared.models import Order, OutboxEvent
from shared.settings import Settings
from tests.conftest import StartApp, make_account, with_settings
from tests.hardening.conftest import Lines, StartLink
from tests.orders import ONE_ITEM, create_order
from tests.processes import RunModule
from tests.workers.conftest import (
    OrderFactory,
    StartConsumer,
    StartWorker,
    processed_at,
    ready_count,
    wait_for,
)
from workers.jobs import PROCESS_ORDER, create_arq_redis, process_order_job_id

Client = AsyncTestClient[Litestar]

# A stalled PostgreSQL costs a request at most COMMAND_TIMEOUT_S plus SQLAlchemy's 2 s to
# close the dead connection (shared/database.py); a little more for the test client.
DATABASE_STALL_BOUND_S = 7.0
# A stalled Redis costs each of the limiter, the cache read and the cache write at most
# shared.redis.SOCKET_TIMEOUT_S (1 s).
REDIS_STALL_BOUND_S = 4.0


def own_prefix(settings: Settings) -> str:
    """A Redis prefix of the test's own: its rate-limit counters start at zero."""
    return f"{settings.redis_prefix}faults-{secrets.token_hex(3)}:"


async def timed(request: Any) -> tuple[Any, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


# --- Redis ---------------------------------------------------------------------------------


async def test_orders_work_without_redis_and_the_cache_heals_without_stale_reads(
    settings: Settings, faults: StartLink, start_app: StartApp
) -> None:
    link = faults(settings.redis_url)
    app_settings = with_settings(
        settings,
        redis_url=link.url(settings.redis_url),
        redis_prefix=own_prefix(settings),
        rate_limit="30/minute",
    )
    client = await start_app(create_app(app_settings))
    alice = await make_account(client)
    before = await create_order(client, alice)  # cached as PENDING
    assert (await client.get(f"/orders/{before['id']}", headers=alice.headers)).headers[
        "x-cache"
    ] == "HIT"

    link.down()

    during = await create_order(client, alice)
    read = await client.get(f"/orders/{during['id']}", headers=alice.headers)
    assert (read.status_code, read.headers["x-cache"]) == (200, "MISS")
    patched = await client.patch(
        f"/orders/{before['id']}", json={"status": "PAID"}, headers=alice.headers
    )
    assert patched.status_code == 200, patched.text
    reread = await client.get(f"/orders/{before['id']}", headers=alice.headers)
    assert (reread.status_code, reread.json()["status"]) == (200, "PAID")
    # The limiter fails open (shared/rate_limit.py): past the 30/minute budget, no 429.
    unlimited = [
        (await client.get(f"/orders/{during['id']}", headers=alice.headers)).status_code
        for _ in range(35)
    ]
    assert unlimited == [200] * 35

    link.restore()

    # Redis still holds the PENDING view cached before the outage: it is never served. The
    # first read goes to PostgreSQL, and the views the outage kept from Redis are written.
    reads = [await client.get(f"/orders/{before['id']}", headers=alice.headers) for _ in "12"]
    assert [(r.headers["x-cache"], r.json()["status"]) for r in reads] == [
        ("MISS", "PAID"),
        ("HIT", "PAID"),
    ]
    healed = await client.get(f"/orders/{during['id']}", headers=alice.headers)
    assert (healed.headers["x-cache"], healed.json()) == ("HIT", during)
    # Limiting is back: the same burst now meets the budget.
    limited = [
        (await client.get(f"/orders/{during['id']}", headers=alice.headers)).status_code
        for _ in range(35)
    ]
    assert 429 in limited


async def test_a_stalled_redis_slows_a_request_down_but_does_not_fail_it(
    settings: Settings, faults: StartLink, start_app: StartApp
) -> None:
    link = faults(settings.redis_url)
    app_settings = with_settings(
        settings, redis_url=link.url(settings.redis_url), redis_prefix=own_prefix(settings)
    )
    client = await start_app(create_app(app_settings))
    alice = await make_account(client)
    order = await create_order(client, alice)

    link.stall()
    response, elapsed = await timed(client.get(f"/orders/{order['id']}", headers=alice.headers))

    assert (response.status_code, response.headers["x-cache"]) == (200, "MISS")
    assert elapsed < REDIS_STALL_BOUND_S
    link.restore()
    assert (await client.get(f"/orders/{order['id']}", headers=alice.headers)).status_code == 200


# --- RabbitMQ ------------------------------------------------------------------------------

ORDERS_DURING_OUTAGE = 20


async def test_every_order_made_while_rabbitmq_is_down_is_processed_once_it_is_back(
    pipeline_settings: Settings,
    faults: StartLink,
    start_app: StartApp,
    engine: AsyncEngine,
    redis: Redis,
    start_consumer: StartConsumer,
    start_worker: StartWorker,
    worker_log: Lines,
) -> None:
    link = faults(pipeline_settings.rabbitmq_url)
    app = create_app(
        with_settings(pipeline_settings, rabbitmq_url=link.url(pipeline_settings.rabbitmq_url))
    )
    client = await start_app(app)
    assert await app.state.bus.wait_ready(within=10)
    alice = await make_account(client)

    link.down()
    await wait_for(lambda: _not_ready(app))
    created = [await create_order(client, alice) for _ in range(ORDERS_DURING_OUTAGE)]
    ids = [uuid.UUID(order["id"]) for order in created]
    assert await _unsent(engine, ids) == ORDERS_DURING_OUTAGE  # all kept in the outbox

    link.restore()
    # The worker's sweeper publishes the outbox; the consumer turns events into jobs.
    await start_consumer(pipeline_settings)
    await start_worker(pipeline_settings)
    await wait_for(lambda: _all_processed(engine, ids), within=30, every=0.1)
    await wait_for(lambda: _jobs_done(pipeline_settings, ids))  # their results, logs written

    assert await _unsent(engine, ids) == 0
    lines = {order_id: worker_log.count(f"Order {order_id} processed") for order_id in ids}
    assert lines == dict.fromkeys(ids, 1)  # none lost, none processed twice
    outcomes = await _job_outcomes(pipeline_settings, ids)
    assert outcomes == dict.fromkeys(ids, (True, 1))  # each job: did the work, first try


async def _not_ready(app: Litestar) -> bool:
    return not app.state.bus.ready


async def _unsent(engine: AsyncEngine, order_ids: list[uuid.UUID]) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.order_id.in_(order_ids), OutboxEvent.sent_at.is_(None))
        )
    return int(count or 0)


async def _all_processed(engine: AsyncEngine, order_ids: list[uuid.UUID]) -> bool:
    async with engine.connect() as conn:
        done = await conn.scalar(
            select(func.count())
            .select_from(Order)
            .where(Order.id.in_(order_ids), Order.processed_at.is_not(None))
        )
    return done == len(order_ids)


async def _job_outcomes(
    settings: Settings, order_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[object, int]]:
    """Each order's ``process_order`` job: (what it returned, which try it was)."""
    arq = create_arq_redis(settings, max_connections=4)
    try:
        outcomes = {}
        for order_id in order_ids:
            job = Job(process_order_job_id(order_id), arq, _queue_name=settings.arq_queue)
            assert await job.status() == JobStatus.complete
            info = await job.result_info()
            assert info is not None
            outcomes[order_id] = (info.result, info.job_try)
        return outcomes
    finally:
        await arq.aclose()


# --- PostgreSQL ----------------------------------------------------------------------------


async def test_a_database_outage_is_a_prompt_503_and_the_same_app_recovers(
    settings: Settings, faults: StartLink, start_app: StartApp
) -> None:
    link = faults(settings.database_url)
    app = create_app(with_settings(settings, database_url=link.url(settings.database_url)))
    client = await start_app(app)
    alice = await make_account(client)
    order = await create_order(client, alice)

    link.stall()  # connections open, nothing answers: the case timeouts are for
    stalled, elapsed = await timed(client.post("/orders", json=ONE_ITEM, headers=alice.headers))
    assert elapsed < DATABASE_STALL_BOUND_S
    _assert_database_503(stalled)

    link.down()  # refused and reset: answered at once
    down, elapsed = await timed(client.post("/orders", json=ONE_ITEM, headers=alice.headers))
    assert elapsed < 1.0
    _assert_database_503(down)

    link.restore()  # the same app object, no restart

    created = await client.post("/orders", json=ONE_ITEM, headers=alice.headers)
    assert created.status_code == 201, created.text
    listed = await client.get(f"/orders/user/{alice.id}", headers=alice.headers)
    assert listed.status_code == 200
    assert {o["id"] for o in listed.json()} >= {order["id"], created.json()["id"]}


def _assert_database_503(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "status_code": 503,
        "detail": "database temporarily unavailable, retry shortly",
    }
    assert int(response.headers["retry-after"]) > 0


# --- processes killed mid-way ---------------------------------------------------------------


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
    await wait_for(lambda: _jobs_done(pipeline_settings, [event.order_id]), within=15)
    assert await processed_at(engine, event.order_id) is not None
    assert worker_log.count(f"Order {event.order_id} processed") == 1
    assert await _job_outcomes(pipeline_settings, [event.order_id]) == {event.order_id: (True, 1)}


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
    await mark_sent(engine, [event.event_id])
    await _enqueue(pipeline_settings, event.order_id)
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
    await wait_for(lambda: _jobs_done(pipeline_settings, [event.order_id]), within=15)
    assert await processed_at(engine, event.order_id) is not None
    assert worker_log.count(f"Order {event.order_id} processed") == 1
    assert _lines(tmp_path / "workers.worker.log", f"Order {event.order_id}") == []
    assert await _job_outcomes(pipeline_settings, [event.order_id]) == {event.order_id: (True, 2)}


async def test_a_job_killed_after_its_commit_runs_again_without_a_second_update(
    pipeline_settings: Settings,
    faults: StartLink,
    engine: AsyncEngine,
    redis: Redis,
    new_order: OrderFactory,
    run_module: RunModule,
    start_worker: StartWorker,
    worker_log: Lines,
) -> None:
    link = faults(pipeline_settings.redis_url)
    event = await new_order()
    await mark_sent(engine, [event.event_id])
    await _enqueue(pipeline_settings, event.order_id)
    worker = await run_module(
        "workers.worker",
        with_settings(
            pipeline_settings,
            redis_url=link.url(pipeline_settings.redis_url),
            process_order_delay_s=1.0,
        ),
    )
    await wait_for(lambda: redis.exists(_in_progress(event.order_id)), within=20)
    # From here the job cannot report back: its cache write and arq's bookkeeping hang (1 s
    # socket timeout each), which leaves time to kill it between its commit and its end.
    link.stall()
    first = await wait_for(lambda: processed_at(engine, event.order_id), every=0.01)

    worker.kill()
    assert await worker.wait() == -signal.SIGKILL

    await _expire_lease(redis, event.order_id)
    await start_worker(pipeline_settings)
    await wait_for(lambda: _jobs_done(pipeline_settings, [event.order_id]), within=15)
    assert await processed_at(engine, event.order_id) == first  # not set a second time
    assert worker_log.count(f"Order {event.order_id} was already processed") == 1
    assert worker_log.count(f"Order {event.order_id} processed") == 0
    assert await _job_outcomes(pipeline_settings, [event.order_id]) == {event.order_id: (False, 2)}


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


async def _enqueue(settings: Settings, order_id: uuid.UUID) -> None:
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


async def _jobs_done(settings: Settings, order_ids: list[uuid.UUID]) -> bool:
    """Every order's job has its result stored: it returned, and logged, before that."""
    arq = create_arq_redis(settings, max_connections=2)
    try:
        for order_id in order_ids:
            job = Job(process_order_job_id(order_id), arq, _queue_name=settings.arq_queue)
            if await job.status() != JobStatus.complete:
                return False
        return True
    finally:
        await arq.aclose()


def _lines(log: Path, containing: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if containing in line]
