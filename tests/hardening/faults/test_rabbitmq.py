"""Faults between the service and RabbitMQ: the bus down while orders are made.

A ``FaultyLink`` (tools/harness/faults.py) between the app and the real RabbitMQ refuses and
cuts it; the outbox keeps every event, and the sweeper publishes them once the link is back.
"""

from __future__ import annotations

import uuid

from litestar import Litestar
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app import create_app
from shared.services import services_of
from shared.settings import Settings
from tests.accounts import make_account
from tests.apps import StartApp, with_settings
from tests.hardening.faults.checks import (
    all_processed,
    job_outcomes,
    jobs_done,
    unsent,
)
from tests.logs import Lines
from tests.orders import create_order
from tests.pipeline import (
    StartConsumer,
    StartWorker,
    wait_for,
)
from tools.harness.faults import StartLink

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
    assert await unsent(engine, ids) == ORDERS_DURING_OUTAGE  # all kept in the outbox

    link.restore()
    # The worker's sweeper publishes the outbox; the consumer turns events into jobs.
    await start_consumer(pipeline_settings)
    await start_worker(pipeline_settings)
    await wait_for(lambda: all_processed(engine, ids), within=30, every=0.1)
    await wait_for(lambda: jobs_done(pipeline_settings, ids))  # their results, logs written

    # The sweep marks its batch sent when the batch is confirmed, in the transaction that
    # holds the rows; a fast job can finish before that commit, so this waits for it.
    await wait_for(lambda: _all_sent(engine, ids))
    lines = {order_id: worker_log.count(f"Order {order_id} processed") for order_id in ids}
    assert lines == dict.fromkeys(ids, 1)  # none lost, none processed twice
    outcomes = await job_outcomes(pipeline_settings, ids)
    assert outcomes == dict.fromkeys(ids, (True, 1))  # each job: did the work, first try


async def _all_sent(engine: AsyncEngine, ids: list[uuid.UUID]) -> bool:
    return await unsent(engine, ids) == 0


async def _not_ready(app: Litestar) -> bool:
    return not services_of(app).bus.ready
