"""Faults between the service and PostgreSQL: refused, stalled, cut mid-statement.

Each test puts a ``FaultyLink`` (tools/harness/faults.py) between an app or worker and the real
PostgreSQL, then refuses, cuts or stalls it: prompt 503s, cached reads that go on, the user
directory's bound, jobs retried rather than failed; the shared server is never touched.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import asyncpg
import pytest
from arq.jobs import Job
from arq.worker import Retry
from litestar import Litestar, get
from litestar.di import NamedDependency
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import create_app
from features.process_order.job import process_order
from shared.db import Database, asyncpg_dsn, create_engine
from shared.messaging.jobs import create_arq_redis, process_order_job_id
from shared.messaging.outbox import mark_sent
from shared.models import Order
from shared.services import Services, services_of
from shared.settings import Settings
from tests.accounts import make_account
from tests.apps import StartApp, with_settings
from tests.hardening.faults.checks import (
    RECONCILE_AFTER_S,
    RECONCILE_INTERVAL_S,
    enqueue,
    job_outcomes,
    jobs_done,
    own_prefix,
    reconciling,
    timed,
)
from tests.logs import Lines
from tests.orders import ONE_ITEM, create_order
from tests.pipeline import (
    OrderFactory,
    StartWorker,
    order_factory,
    processed_at,
    wait_for,
)
from tools.harness.faults import StartLink
from workers.queue_status import queue_report
from workers.worker import shutdown, startup

Client = AsyncTestClient[Litestar]


# A stalled PostgreSQL costs a request at most COMMAND_TIMEOUT_S plus SQLAlchemy's 2 s to
# close the dead connection (shared/db.py); a little more for the test client.
DATABASE_STALL_BOUND_S = 7.0


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


STALENESS_S = 2.0


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
async def slow_query(services: NamedDependency[Services]) -> dict[str, bool]:
    """A statement that is still running when a test cuts the link."""
    async with services.db.connect() as conn:
        await conn.execute(text("SELECT pg_sleep(2)"))
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
    """The connection goes back to the pool after the link died under it (once, the closing
    of advanced-alchemy's request session failed there: the chaos run saw a 500 on POST
    /token); the handler's answer stands."""
    link = faults(settings.database_url)

    @get("/probe/read-then-lose-the-link")
    async def read_then_lose_the_link(services: NamedDependency[Services]) -> dict[str, int]:
        async with services.db.connect() as conn:
            value = (await conn.execute(text("SELECT 1"))).scalar_one()
            link.cut()  # the handler still holds its connection
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
        await mark_sent(Database(engine), [event.event_id])
        link.down()

        with pytest.raises(Retry):
            await process_order(ctx, str(event.order_id))

        link.restore()
        assert await process_order(ctx, str(event.order_id)) is True
    finally:
        await shutdown(ctx)


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
        await mark_sent(Database(db), [event.event_id])
        await enqueue(settings, event.order_id)
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
        await wait_for(lambda: jobs_done(settings, [event.order_id]))
        report = await queue_report(settings, redis, Database(db))
        async with db.connect() as conn:
            attempts = await conn.scalar(
                select(Order.reconcile_attempts).where(Order.id == event.order_id)
            )
    finally:
        await db.dispose()

    assert elapsed < RECONCILE_AFTER_S + RECONCILE_INTERVAL_S
    assert worker_log.count(f"Order {event.order_id} processed") == 1
    assert await job_outcomes(settings, [event.order_id]) == {event.order_id: (True, 1)}
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


def _assert_database_503(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "status_code": 503,
        "detail": "database temporarily unavailable, retry shortly",
    }
    assert int(response.headers["retry-after"]) > 0
