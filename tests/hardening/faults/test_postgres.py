"""Faults injected between the service and its dependencies: nothing lost, nothing stale.

Each test puts a ``FaultyLink`` (tests/faults.py) between an app, consumer or worker and the
real PostgreSQL, Redis or RabbitMQ, then refuses, cuts or stalls it; the shared servers are
never touched.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvloop
from aio_pika.abc import AbstractChannel
from arq.jobs import Job, JobStatus
from arq.worker import Retry
from litestar import Litestar, get
from litestar.di import NamedDependency
from litestar.testing import AsyncTestClient
from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app import create_app
from features.process_order.job import process_order
from shared.bus import EventBus
from shared.database import asyncpg_dsn, create_engine
from shared.jobs import PROCESS_ORDER, create_arq_redis, process_order_job_id
from shared.models import Order, OutboxEvent
from shared.outbox import mark_sent
from shared.redis import ResetAwareConnection, create_redis
from shared.services import services_of
from shared.settings import Settings
from tests.accounts import make_account
from tests.apps import StartApp, with_settings
from tests.faults import StartLink
from tests.logs import Lines
from tests.orders import ONE_ITEM, create_order
from tests.outbox import publish_staged
from tests.pipeline import (
    OrderFactory,
    StartConsumer,
    StartWorker,
    delete_arq_keys,
    order_factory,
    processed_at,
    ready_count,
    wait_for,
)
from tests.processes import RunModule, free_port
from workers.queue_status import queue_report
from workers.worker import shutdown, startup

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
    assert await services_of(app).bus.wait_ready(within=10)
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
    return not services_of(app).bus.ready


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


# --- jobs lost or given up: the reconciler ------------------------------------------------

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


async def test_orders_whose_jobs_redis_lost_are_processed_once_the_worker_is_back(
    own_database: Settings,
    run_module: RunModule,
    start_app: StartApp,
    redis: Redis,
    start_consumer: StartConsumer,
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    settings = reconciling(own_database, worker_metrics_port=metrics_port)
    app = create_app(settings)
    client = await start_app(app)
    assert await services_of(app).bus.wait_ready(within=10)
    alice = await make_account(client)
    await start_consumer(settings)  # no worker: the jobs wait in Redis
    ids = [uuid.UUID((await create_order(client, alice))["id"]) for _ in range(JOBS_LOST)]
    db = create_engine(settings)
    try:
        await wait_for(lambda: _queued_is(redis, settings.arq_queue, JOBS_LOST), within=15)
        await wait_for(lambda: _unsent_is(db, ids, 0))

        # Redis restarts without persistence: the run's arq keys are gone (only the run's:
        # other runs share this Redis, so no FLUSHDB).
        await delete_arq_keys(redis, [process_order_job_id(order_id) for order_id in ids])
        await redis.delete(settings.arq_queue)
        assert await redis.zcard(settings.arq_queue) == 0

        await run_module("workers.worker", settings, log="worker")
        log = tmp_path / "worker.log"
        await wait_for(_logged(log, "Starting worker"), within=60, every=0.02)
        back = time.monotonic()  # the worker is up
        await wait_for(lambda: _all_processed(db, ids), within=30, every=0.1)
        elapsed = time.monotonic() - back
        await wait_for(lambda: _jobs_done(settings, ids))
    finally:
        await db.dispose()

    assert elapsed < RECONCILE_AFTER_S + RECONCILE_INTERVAL_S
    assert {order_id: len(_lines(log, f"Order {order_id} processed")) for order_id in ids} == (
        dict.fromkeys(ids, 1)
    )
    assert _lines(log, "was already processed") == []
    assert await _job_outcomes(settings, ids) == dict.fromkeys(ids, (True, 1))
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert f'orders_reconciler_reenqueued_total{{reason="lost"}} {float(JOBS_LOST)}' in metrics


JOBS_LOST = 20


async def test_an_order_whose_job_failed_all_its_tries_is_processed_after_postgresql_returns(
    own_database: Settings,
    faults: StartLink,
    redis: Redis,
    start_worker: StartWorker,
    worker_log: Lines,
) -> None:
    link = faults(own_database.database_url)
    settings = reconciling(
        own_database, database_url=link.url(own_database.database_url), job_max_tries=2
    )
    db = create_engine(own_database)  # the test's own path to PostgreSQL, never cut
    try:
        event = await order_factory(db)()
        await mark_sent(db, [event.event_id])
        await _enqueue(settings, event.order_id)
        link.down()

        await start_worker(settings)
        # Try 1 and 2 fail (retried 2 s, then 4 s later); the third pickup exceeds max_tries
        # and arq stores the failed result, which would make it refuse the job id for an hour.
        result_key = f"arq:result:{process_order_job_id(event.order_id)}"
        await wait_for(lambda: redis.exists(result_key), within=30, every=0.2)
        assert await _job_outcomes_of_failures(settings, event.order_id) == (False, 3)
        assert await processed_at(db, event.order_id) is None

        link.restore()
        restored = time.monotonic()
        await wait_for(lambda: processed_at(db, event.order_id), within=30, every=0.1)
        elapsed = time.monotonic() - restored
        await wait_for(lambda: _jobs_done(settings, [event.order_id]))
        report = await queue_report(settings, redis, db)
        async with db.connect() as conn:
            attempts = await conn.scalar(
                select(Order.reconcile_attempts).where(Order.id == event.order_id)
            )
    finally:
        await db.dispose()

    assert elapsed < RECONCILE_AFTER_S + RECONCILE_INTERVAL_S
    assert worker_log.count(f"Order {event.order_id} processed") == 1
    assert await _job_outcomes(settings, [event.order_id]) == {event.order_id: (True, 1)}
    assert (report.reenqueued, attempts) == ({"failed": 1}, 1)


async def _job_outcomes_of_failures(settings: Settings, order_id: uuid.UUID) -> tuple[bool, int]:
    arq = create_arq_redis(settings, max_connections=2)
    try:
        job = Job(process_order_job_id(order_id), arq, _deserializer=arq.job_deserializer)
        info = await job.result_info()
    finally:
        await arq.aclose()
    assert info is not None
    return info.success, info.job_try


def _logged(log: Path, containing: str) -> Callable[[], Awaitable[bool]]:
    """A condition for ``wait_for``: ``log`` has a line ``containing`` this."""

    async def check() -> bool:
        return await asyncio.to_thread(lambda: log.exists() and bool(_lines(log, containing)))

    return check


async def _queued_is(redis: Redis, queue: str, count: int) -> bool:
    return bool(await redis.zcard(queue) == count)


async def _unsent_is(engine: AsyncEngine, order_ids: list[uuid.UUID], count: int) -> bool:
    return await _unsent(engine, order_ids) == count


async def test_a_redis_connection_reset_while_connecting_is_a_redis_error_under_uvloop() -> None:
    """uvicorn runs the API on uvloop, where writing to a socket the server has just reset
    raises RuntimeError; the limiter and the cache tolerate RedisError only, so the chaos
    run saw 500s. The server here resets every connection right after accepting it (with
    redis-py's health check off, the first write of a new connection meets the reset)."""

    async def attempts(connection_class: type[Connection]) -> Counter[str]:
        async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(0)
            writer.transport.abort()

        server = await asyncio.start_server(reset, "127.0.0.1", 0)
        url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
        pool = BlockingConnectionPool.from_url(
            url, socket_timeout=1, connection_class=connection_class
        )
        redis = Redis(connection_pool=pool)
        errors: Counter[str] = Counter()
        async with server:
            for _ in range(10):
                try:
                    await redis.get("key")
                except (RedisError, RuntimeError) as exc:
                    errors[type(exc).__name__] += 1
        await redis.aclose()
        return errors

    assert create_redis("redis://127.0.0.1/0").connection_pool.connection_class is (
        ResetAwareConnection
    )
    assert await asyncio.to_thread(uvloop.run, attempts(Connection)) == {"RuntimeError": 10}
    fixed = await asyncio.to_thread(uvloop.run, attempts(ResetAwareConnection))
    assert fixed == {"ConnectionError": 10}


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


async def test_cached_reads_go_on_through_a_database_outage_while_writes_are_a_prompt_503(
    settings: Settings, faults: StartLink, start_app: StartApp
) -> None:
    link = faults(settings.database_url)
    app_settings = with_settings(settings, database_url=link.url(settings.database_url))
    app = create_app(with_settings(app_settings, redis_prefix=own_prefix(settings)))
    client = await start_app(app)
    alice, bob = await make_account(client), await make_account(client)
    order = await create_order(client, alice)  # cached
    users = services_of(app).users
    await wait_for(lambda: asyncio.sleep(0, users.listening), within=10)
    path = f"/orders/{order['id']}"
    assert (await client.get(path, headers=alice.headers)).headers["x-cache"] == "HIT"

    for fault in (link.down, link.stall):
        fault()
        await wait_for(lambda: asyncio.sleep(0, not users.listening), within=10)

        read, read_s = await timed(client.get(path, headers=alice.headers))
        assert (read.status_code, read.headers["x-cache"], read.json()) == (200, "HIT", order)
        assert read_s < 1.0
        bound = 1.0 if fault == link.down else DATABASE_STALL_BOUND_S
        write, write_s = await timed(client.post("/orders", json=ONE_ITEM, headers=alice.headers))
        _assert_database_503(write)
        listed, list_s = await timed(client.get(f"/orders/user/{alice.id}", headers=alice.headers))
        _assert_database_503(listed)
        assert max(write_s, list_s) < bound
        # Bob never called before the outage: nothing vouches for him, so no answer but 503.
        unknown = await client.get(path, headers=bob.headers)
        _assert_database_503(unknown)

        link.restore()
        await wait_for(lambda: asyncio.sleep(0, users.listening), within=15)

    created = await client.post("/orders", json=ONE_ITEM, headers=alice.headers)
    assert created.status_code == 201, created.text


async def test_a_user_deleted_during_a_database_outage_is_vouched_for_at_most_the_bound(
    settings: Settings, faults: StartLink, start_app: StartApp
) -> None:
    link = faults(settings.database_url)
    app = create_app(
        with_settings(
            settings,
            database_url=link.url(settings.database_url),
            redis_prefix=own_prefix(settings),
            user_directory_max_staleness_s=STALENESS_S,
        )
    )
    client = await start_app(app)
    alice, carol = await make_account(client), await make_account(client)
    orders = {a.id: await create_order(client, a) for a in (alice, carol)}
    users = services_of(app).users
    await wait_for(lambda: asyncio.sleep(0, users.listening), within=10)
    for account in (alice, carol):  # both known to this process, both orders cached
        read = await client.get(f"/orders/{orders[account.id]['id']}", headers=account.headers)
        assert read.status_code == 200

    link.down()
    await wait_for(lambda: asyncio.sleep(0, not users.listening), within=10, every=0.01)
    lost = time.monotonic()  # the directory's bound runs from here
    await _delete_user(settings, carol.id)  # through another path: this process cannot tell
    carol_read = f"/orders/{orders[carol.id]['id']}"

    within_bound = await client.get(carol_read, headers=carol.headers)
    assert time.monotonic() - lost < STALENESS_S
    assert within_bound.status_code == 200  # the documented trade-off
    await asyncio.sleep(STALENESS_S - (time.monotonic() - lost) + 0.2)
    _assert_database_503(await client.get(carol_read, headers=carol.headers))  # no more vouching
    _assert_database_503(
        await client.get(f"/orders/{orders[alice.id]['id']}", headers=alice.headers)
    )

    link.restore()
    await wait_for(lambda: asyncio.sleep(0, users.listening), within=15)
    assert (await client.get(carol_read, headers=carol.headers)).status_code == 401
    alice_read = f"/orders/{orders[alice.id]['id']}"
    assert (await client.get(alice_read, headers=alice.headers)).status_code == 200


STALENESS_S = 2.0


async def test_users_deleted_while_the_listener_was_away_are_forgotten_when_it_is_back(
    settings: Settings, faults: StartLink, start_app: StartApp
) -> None:
    link = faults(settings.database_url)
    app = create_app(with_settings(settings, database_url=link.url(settings.database_url)))
    client = await start_app(app)
    alice, carol = await make_account(client), await make_account(client)
    users = services_of(app).users
    await wait_for(lambda: asyncio.sleep(0, users.listening), within=10)
    for account in (alice, carol):
        assert (await client.get(f"/orders/user/{account.id}", headers=account.headers)).is_success

    link.down()
    await wait_for(lambda: asyncio.sleep(0, not users.listening), within=10)
    await _delete_user(settings, carol.id)  # its NOTIFY never reaches this process
    link.restore()
    await wait_for(lambda: asyncio.sleep(0, users.listening), within=15)
    # The pool's connections died in the outage: the first query finds one and fails (503),
    # which makes SQLAlchemy drop them all. A client retries a 503.
    await wait_for(lambda: _answers(client, f"/orders/user/{alice.id}", alice.headers))

    assert (await client.get(f"/orders/user/{carol.id}", headers=carol.headers)).status_code == 401
    assert (await client.get(f"/orders/user/{alice.id}", headers=alice.headers)).status_code == 200


async def _answers(client: Client, path: str, headers: dict[str, str]) -> bool:
    return (await client.get(path, headers=headers)).status_code != 503


async def _delete_user(settings: Settings, user_id: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await conn.execute("DELETE FROM users WHERE id = $1", user_id)
    finally:
        await conn.close()


@get("/probe/slow-query")
async def slow_query(db_session: NamedDependency[AsyncSession]) -> dict[str, bool]:
    """A statement that is still running when a test cuts the link."""
    await db_session.execute(text("SELECT pg_sleep(2)"))
    return {"done": True}


async def test_a_connection_lost_mid_statement_is_a_503_not_a_500(
    settings: Settings, faults: StartLink, start_app: StartApp
) -> None:
    """asyncpg reports it as a plain DBAPIError (not OperationalError); the chaos run met it
    as a 500 on PATCH /orders, POST /orders and POST /token."""
    link = faults(settings.database_url)
    app = create_app(with_settings(settings, database_url=link.url(settings.database_url)))
    app.register(slow_query)
    client = await start_app(app)
    alice = await make_account(client)
    threading.Timer(0.5, link.cut).start()  # the test client blocks this loop meanwhile

    response = await client.get("/probe/slow-query", headers=alice.headers)

    _assert_database_503(response)


async def test_a_connection_lost_before_the_response_leaves_a_finished_request_alone(
    settings: Settings, faults: StartLink, start_app: StartApp
) -> None:
    """The request's session is closed (rolled back) as the response starts; if the link died
    after the handler's last statement, that rollback fails. The chaos run saw it as a 500
    on POST /token; the handler's answer stands instead."""
    link = faults(settings.database_url)

    @get("/probe/read-then-lose-the-link")
    async def read_then_lose_the_link(db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
        value = (await db_session.execute(text("SELECT 1"))).scalar_one()
        link.cut()  # the session still holds its connection, in a transaction
        await asyncio.sleep(0.2)  # asyncpg notices the reset
        return {"value": value}

    app = create_app(with_settings(settings, database_url=link.url(settings.database_url)))
    app.register(read_then_lose_the_link)
    client = await start_app(app)
    alice = await make_account(client)

    response = await client.get("/probe/read-then-lose-the-link", headers=alice.headers)

    assert response.status_code == 200, response.text
    assert response.json() == {"value": 1}


async def test_a_job_that_cannot_reach_the_database_is_retried_not_failed(
    pipeline_settings: Settings,
    faults: StartLink,
    redis: Redis,
    engine: AsyncEngine,
    new_order: OrderFactory,
) -> None:
    """A new connection that fails during its set-up raises asyncpg's own errors (a
    ConnectionError, asyncpg's InterfaceError), not SQLAlchemy's; arq would fail such a job
    for good. The chaos run lost 48 orders of 233 this way."""
    link = faults(pipeline_settings.database_url)
    routed = with_settings(
        pipeline_settings,
        database_url=link.url(pipeline_settings.database_url),
        process_order_delay_s=0.0,
    )
    ctx: dict[str, Any] = {"settings": routed, "redis": redis, "job_try": 1}
    await startup(ctx)
    try:
        event = await new_order()
        await mark_sent(engine, [event.event_id])
        link.down()

        with pytest.raises(Retry):
            await process_order(ctx, str(event.order_id))

        link.restore()
        assert await process_order(ctx, str(event.order_id)) is True
    finally:
        await shutdown(ctx)


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
    tmp_path: Path,
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
    # arq logs the job's start after its last Redis call before the job (the in-progress key
    # comes earlier: a stall between the two kept the job from ever starting).
    started = f"{process_order_job_id(event.order_id)}:{PROCESS_ORDER}("
    log = tmp_path / "workers.worker.log"
    await wait_for(_logged(log, started), within=20, every=0.01)
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


def _lines(log: Path, containing: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if containing in line]
