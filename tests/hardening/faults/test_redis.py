"""Faults between the service and Redis: refused, cut, stalled, reset, or its data lost.

Each test puts a ``FaultyLink`` (tools/harness/faults.py) between an app or worker and the real
Redis, then refuses, cuts or stalls it; or deletes the run's own arq keys as a restart without
persistence would. The shared server is never touched.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import uvloop
from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from app import create_app
from shared.db import create_engine
from shared.messaging.jobs import process_order_job_id
from shared.redis import ResetAwareConnection, create_redis
from shared.services import services_of
from shared.settings import Settings
from tests.accounts import make_account
from tests.apps import StartApp, with_settings
from tests.hardening.faults.checks import (
    RECONCILE_AFTER_S,
    RECONCILE_INTERVAL_S,
    all_processed,
    enqueue,
    job_outcomes,
    jobs_done,
    log_lines,
    logged,
    own_prefix,
    reconciling,
    timed,
    unsent,
)
from tests.orders import create_order
from tests.pipeline import (
    OrderFactory,
    StartConsumer,
    delete_arq_keys,
    wait_for,
)
from tests.processes import RunModule
from tools.harness.faults import StartLink
from tools.harness.processes import free_port

# A stalled Redis costs each of the limiter, the cache read and the cache write at most
# shared.redis.SOCKET_TIMEOUT_S (1 s).
REDIS_STALL_BOUND_S = 4.0


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
    # The limiter fails open (shared/http/rate_limit.py): past the 30/minute budget, no 429.
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


JOBS_LOST = 20


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
        await wait_for(logged(log, "Starting worker"), within=60, every=0.02)
        back = time.monotonic()  # the worker is up
        await wait_for(lambda: all_processed(db, ids), within=30, every=0.1)
        elapsed = time.monotonic() - back
        await wait_for(lambda: jobs_done(settings, ids))
    finally:
        await db.dispose()

    assert elapsed < RECONCILE_AFTER_S + RECONCILE_INTERVAL_S
    assert {order_id: len(log_lines(log, f"Order {order_id} processed")) for order_id in ids} == (
        dict.fromkeys(ids, 1)
    )
    assert log_lines(log, "was already processed") == []
    assert await job_outcomes(settings, ids) == dict.fromkeys(ids, (True, 1))
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    assert f'orders_reconciler_reenqueued_total{{reason="lost"}} {float(JOBS_LOST)}' in metrics


async def _queued_is(redis: Redis, queue: str, count: int) -> bool:
    return bool(await redis.zcard(queue) == count)


async def _unsent_is(engine: AsyncEngine, order_ids: list[uuid.UUID], count: int) -> bool:
    return await unsent(engine, order_ids) == count


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


async def test_the_worker_rides_out_a_redis_outage_and_processes_after_it(
    pipeline_settings: Settings,
    faults: StartLink,
    run_module: RunModule,
    engine: AsyncEngine,
    new_order: OrderFactory,
    tmp_path: Path,
) -> None:
    """A Redis outage skips the worker's polls; it does not end the process.

    arq lets a poll's Redis error end ``Worker.main``: the process exited, with every job it
    ran, and only a restart policy brought it back (the chaos run saw a worker die this way
    after its last revive, and 690 orders waited). ``BatchClaimWorker`` polls again instead.
    """
    link = faults(pipeline_settings.redis_url)
    settings = with_settings(pipeline_settings, redis_url=link.url(pipeline_settings.redis_url))
    worker = await run_module("workers.worker", settings, log="worker")
    log = tmp_path / "worker.log"
    await wait_for(logged(log, "Starting worker"), within=60, every=0.05)

    link.down()  # refused and reset, then a stall: the worker polls every 0.1 s through both
    await asyncio.sleep(2)
    link.restore()
    link.stall()
    await asyncio.sleep(2)
    link.restore()

    event = await new_order()
    await enqueue(pipeline_settings, event.order_id)  # straight to Redis, not through the link
    assert worker.returncode is None, log.read_text()[-2000:]  # it lived through the outage
    await wait_for(lambda: all_processed(engine, [event.order_id]), within=30, every=0.1)
    assert log_lines(log, "worker poll skipped, redis unreachable")


async def test_a_pooled_connection_the_server_closed_is_made_again_before_its_command(
    settings: Settings,
) -> None:
    """The pool no longer polls each connection's socket before a command (issue 22); one the
    server closed meanwhile (a restart, ``CLIENT KILL``) is still replaced, not used."""
    redis = create_redis(settings.redis_url, max_connections=1)
    killer = create_redis(settings.redis_url, max_connections=1)
    try:
        first_id = await redis.client_id()
        assert await killer.client_kill_filter(_id=first_id) == 1
        await asyncio.sleep(0.1)  # the EOF reaches the loop
        second_id = await redis.client_id()  # would raise ConnectionError on the dead socket
        assert second_id != first_id
        assert await redis.client_id() == second_id  # a live connection is kept
    finally:
        await redis.aclose()
        await killer.aclose()
