"""The reconciler, one run at a time, against real PostgreSQL and Redis (its own database).

What it must take up and what it must leave alone; the end-to-end faults it exists for
(Redis losing its data, a job that used up its tries) are in tests/hardening/faults/
(test_redis.py, test_postgres.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from features.reconcile_orders.job import Reconciler, reconcile_job
from shared.db import Database, create_engine
from shared.messaging.jobs import create_arq_redis, enqueue_process_order, process_order_job_id
from shared.messaging.outbox import mark_sent
from shared.models import Order
from shared.settings import Settings
from tests.apps import with_settings
from tests.pipeline import OrderFactory, order_factory
from workers.queue_status import queue_report, render

AFTER_S = 1.0


@pytest.fixture
def reconcile_settings(own_database: Settings) -> Settings:
    return with_settings(own_database, reconcile_after_s=AFTER_S, reconcile_max_delay_s=10.0)


@pytest.fixture
async def db(reconcile_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(reconcile_settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def arq(reconcile_settings: Settings) -> AsyncIterator[ArqRedis]:
    client = create_arq_redis(reconcile_settings, max_connections=8)
    yield client
    await client.aclose()


@pytest.fixture
def make_order(db: AsyncEngine) -> OrderFactory:
    return order_factory(db)


async def old_sent_order(make_order: OrderFactory, db: AsyncEngine) -> uuid.UUID:
    """An order whose event went out a while ago and that is still unprocessed."""
    event = await make_order()
    await mark_sent(Database(db), [event.event_id])
    await age(db, event.order_id)
    return event.order_id


async def age(db: AsyncEngine, order_id: uuid.UUID, minutes: int = 5) -> None:
    async with db.begin() as conn:
        await conn.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(created_at=Order.created_at - func.make_interval(0, 0, 0, 0, 0, minutes))
        )


async def attempts(db: AsyncEngine, order_id: uuid.UUID) -> tuple[int, float | None]:
    """The order's re-enqueues so far, and the seconds until the reconciler looks again."""
    async with db.connect() as conn:
        row = (
            await conn.execute(
                select(
                    Order.reconcile_attempts,
                    func.extract("epoch", Order.reconcile_next_at - func.now()),
                ).where(Order.id == order_id)
            )
        ).one()
    return row[0], None if row[1] is None else float(row[1])


async def test_an_order_whose_job_is_gone_is_enqueued_again_once(
    reconcile_settings: Settings, db: AsyncEngine, arq: ArqRedis, make_order: OrderFactory
) -> None:
    order_id = await old_sent_order(make_order, db)
    reconciler = Reconciler(reconcile_settings, Database(db), arq)

    first = await reconciler.run()
    second = await reconciler.run()  # its job is queued now; and it is not due again yet

    assert (first.claimed, first.lost, first.failed) == (1, 1, 0)
    assert second.claimed == 0
    queued = await arq.zrange(reconcile_settings.arq_queue, 0, -1)
    assert queued == [process_order_job_id(order_id).encode()]
    count, next_look = await attempts(db, order_id)
    assert count == 1
    assert next_look is not None
    assert 0 < next_look <= AFTER_S


@pytest.mark.parametrize("state", ["queued", "running"])
async def test_a_live_job_is_never_doubled(
    reconcile_settings: Settings,
    db: AsyncEngine,
    arq: ArqRedis,
    redis: Redis,
    make_order: OrderFactory,
    state: str,
) -> None:
    order_id = await old_sent_order(make_order, db)
    job_id = process_order_job_id(order_id)
    await enqueue_process_order(arq, reconcile_settings.arq_queue, str(order_id))
    job_before = await redis.get(job_key_prefix + job_id)
    if state == "running":  # what arq's worker sets while it runs the job
        await redis.set(in_progress_key_prefix + job_id, b"1", ex=60)

    outcome = await Reconciler(reconcile_settings, Database(db), arq).run()

    assert (outcome.claimed, outcome.live, outcome.lost, outcome.failed) == (1, 1, 0, 0)
    assert await redis.get(job_key_prefix + job_id) == job_before  # untouched
    assert await redis.zcard(reconcile_settings.arq_queue) == 1
    assert (await attempts(db, order_id))[0] == 0
    await redis.delete(in_progress_key_prefix + job_id)


async def test_a_stored_result_of_a_job_that_failed_for_good_does_not_block_it(
    reconcile_settings: Settings,
    db: AsyncEngine,
    arq: ArqRedis,
    redis: Redis,
    make_order: OrderFactory,
) -> None:
    order_id = await old_sent_order(make_order, db)
    result_key = result_key_prefix + process_order_job_id(order_id)
    # The result arq keeps for an hour makes its enqueue refuse this job id.
    await redis.set(result_key, b"a failed result", ex=3600)
    assert await enqueue_process_order(arq, reconcile_settings.arq_queue, str(order_id)) is None

    outcome = await Reconciler(reconcile_settings, Database(db), arq).run()

    assert (outcome.failed, outcome.lost) == (1, 0)
    assert not await redis.exists(result_key)
    assert await redis.zscore(reconcile_settings.arq_queue, process_order_job_id(order_id))


async def test_a_job_that_keeps_failing_is_taken_up_less_and_less_often(
    reconcile_settings: Settings, db: AsyncEngine, arq: ArqRedis, make_order: OrderFactory
) -> None:
    reconciler = Reconciler(reconcile_settings, Database(db), arq)
    orders = {n: await old_sent_order(make_order, db) for n in (0, 2, 9)}
    for n, order_id in orders.items():  # re-enqueued n times already, each failed for good
        async with db.begin() as conn:
            await conn.execute(
                update(Order).where(Order.id == order_id).values(reconcile_attempts=n)
            )

    outcome = await reconciler.run()

    assert outcome.lost == 3
    delays = {n: await attempts(db, order_id) for n, order_id in orders.items()}
    # AFTER_S × 2^n seconds until the next look: 1, 4, then capped at 10 (not 512).
    assert {n: (count, round(delay or 0)) for n, (count, delay) in delays.items()} == {
        0: (1, 1),
        2: (3, 4),
        9: (10, 10),
    }


async def test_orders_the_reconciler_must_leave_alone(
    reconcile_settings: Settings, db: AsyncEngine, arq: ArqRedis, make_order: OrderFactory
) -> None:
    fresh = await make_order()  # younger than RECONCILE_AFTER_S
    await mark_sent(Database(db), [fresh.event_id])
    unsent = await make_order()  # its event is still the sweeper's to publish
    await age(db, unsent.order_id)
    processed = await old_sent_order(make_order, db)
    async with db.begin() as conn:
        await conn.execute(
            update(Order).where(Order.id == processed).values(processed_at=func.now())
        )

    outcome = await Reconciler(reconcile_settings, Database(db), arq).run()

    assert outcome.claimed == 0
    assert await arq.zcard(reconcile_settings.arq_queue) == 0


async def test_reconcilers_running_at_once_enqueue_each_job_once(
    reconcile_settings: Settings, db: AsyncEngine, arq: ArqRedis, make_order: OrderFactory
) -> None:
    order_ids = [await old_sent_order(make_order, db) for _ in range(60)]
    settings = with_settings(reconcile_settings, reconcile_batch=7)  # many small batches
    engines = [create_engine(settings) for _ in range(3)]
    try:
        reconcilers = [Reconciler(settings, Database(engine), arq) for engine in engines]

        async def drain(reconciler: Reconciler) -> tuple[int, int]:
            claimed = lost = 0
            while (outcome := await reconciler.run()).claimed:
                claimed, lost = claimed + outcome.claimed, lost + outcome.lost
            return claimed, lost

        results = await asyncio.gather(*(drain(r) for r in reconcilers))
    finally:
        for engine in engines:
            await engine.dispose()

    assert sum(claimed for claimed, _ in results) == 60  # no order looked at twice
    assert sum(lost for _, lost in results) == 60
    assert all(claimed for claimed, _ in results)  # and they did share the work
    assert await arq.zcard(settings.arq_queue) == 60
    assert {(await attempts(db, order_id))[0] for order_id in order_ids} == {1}


async def test_the_jobs_report_shows_what_the_reconciler_did_and_what_still_fails(
    reconcile_settings: Settings,
    db: AsyncEngine,
    arq: ArqRedis,
    redis: Redis,
    make_order: OrderFactory,
) -> None:
    lost = await old_sent_order(make_order, db)
    failed = await old_sent_order(make_order, db)
    await redis.set(result_key_prefix + process_order_job_id(failed), b"failed", ex=60)
    settings = with_settings(reconcile_settings, redis_prefix=f"{uuid.uuid4().hex}:")
    try:
        await Reconciler(settings, Database(db), arq).run()
        report = await queue_report(settings, redis, Database(db))
    finally:
        await redis.delete(f"{settings.redis_prefix}reconciler:reenqueued")

    text = render(report, settings)
    assert report.reenqueued == {"lost": 1, "failed": 1}
    assert report.failing_orders == 2
    assert {o.id for o in report.oldest_failing} == {lost, failed}
    assert "re-enqueued  1  (job gone from Redis)" in text
    assert "re-enqueued  1  (job failed for good)" in text
    assert "failing      2" in text
    assert f"{lost}  attempts 1" in text


async def test_a_failed_run_logs_the_error_class_and_sqlstate_not_its_text(
    reconcile_settings: Settings, arq: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """A driver's message can quote what it was given; here, the name of a database."""
    missing = f"orders_missing_{uuid.uuid4().hex[:8]}"
    url = make_url(reconcile_settings.database_url).set(database=missing)
    settings = with_settings(
        reconcile_settings, database_url=url.render_as_string(hide_password=False)
    )
    engine = create_engine(settings)
    services = SimpleNamespace(settings=settings, db=Database(engine), redis=arq)
    try:
        with caplog.at_level(logging.WARNING, logger="features.reconcile_orders.job"):
            assert await reconcile_job({"services": services}) == 0
    finally:
        await engine.dispose()
    (record,) = [r for r in caplog.records if r.name == "features.reconcile_orders.job"]
    message = record.getMessage()
    assert message.startswith("reconcile stopped: ")
    assert "InvalidCatalogNameError" in message
    assert "SQLSTATE 3D000" in message
    assert missing not in message
