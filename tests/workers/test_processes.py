"""The entry points, run as the real processes: they work, and SIGTERM stops them gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from aio_pika.abc import AbstractChannel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import Database
from shared.messaging.bus import EventBus
from shared.messaging.jobs import PROCESS_ORDER, create_arq_redis, process_order_job_id
from shared.messaging.outbox import mark_sent
from shared.settings import Settings
from tests.apps import with_settings
from tests.outbox import publish_staged
from tests.pipeline import OrderFactory, processed_at, ready_count, wait_for
from tests.processes import RunModule, run_module, start_api, stops_on_sigterm

__all__ = ["run_module"]  # the fixture, imported for pytest


async def test_worker_process_finishes_its_running_job_on_sigterm(
    pipeline_settings: Settings,
    engine: AsyncEngine,
    redis: Redis,
    new_order: OrderFactory,
    run_module: RunModule,
    tmp_path: Path,
) -> None:
    settings = with_settings(pipeline_settings, process_order_delay_s=2.0)
    event = await new_order()
    await mark_sent(Database(engine), [event.event_id])
    arq = create_arq_redis(settings, max_connections=2)
    await arq.enqueue_job(
        PROCESS_ORDER,
        str(event.order_id),
        _job_id=process_order_job_id(event.order_id),
        _queue_name=settings.arq_queue,
    )
    await arq.aclose()
    worker = await run_module("workers.worker", settings)
    in_progress = f"arq:in-progress:{process_order_job_id(event.order_id)}"
    await wait_for(lambda: redis.exists(in_progress), within=20)
    assert await processed_at(engine, event.order_id) is None  # mid-job

    assert await stops_on_sigterm(worker, within=15) == 0

    assert await processed_at(engine, event.order_id) is not None
    # The line leads to the file that wrote it: its logger is its module's name.
    assert logged_by(tmp_path / "workers.worker.log", f"Order {event.order_id} processed") == {
        "features.process_order.job"
    }


async def test_consumer_process_consumes_and_stops_on_sigterm(
    pipeline_settings: Settings,
    bus: EventBus,
    engine: AsyncEngine,
    redis: Redis,
    rabbitmq: AbstractChannel,
    new_order: OrderFactory,
    run_module: RunModule,
    tmp_path: Path,
) -> None:
    consumer = await run_module("workers.consumer", pipeline_settings)
    event = await new_order()
    assert await publish_staged(bus, engine, event)
    job_id = process_order_job_id(event.order_id)

    async def enqueued() -> bool:
        return await redis.zscore(pipeline_settings.arq_queue, job_id) is not None

    await wait_for(enqueued, within=20)

    assert await stops_on_sigterm(consumer, within=10) == 0
    assert await ready_count(rabbitmq, pipeline_settings.rabbitmq_queue) == 0
    # Run as `python -m`, the module still logs under its name, not "__main__".
    assert logged_by(tmp_path / "workers.consumer.log", "consumer stopped") == {"workers.consumer"}


def logged_by(log: Path, message: str) -> set[str]:
    """The names of the loggers that wrote ``message`` in a process's readable log lines
    (``<time> <level> <logger>: <message>``)."""
    names = set()
    for line in log.read_text().splitlines():
        head, sep, rest = line.partition(": ")
        if sep and rest.startswith(message):
            names.add(head.split()[-1])
    return names


async def test_api_process_answers_its_in_flight_request_on_sigterm(
    pipeline_settings: Settings, run_module: RunModule, tmp_path: Path
) -> None:
    settings = with_settings(pipeline_settings, bcrypt_rounds=12)  # a login takes ~0.3 s
    api, base = await start_api(run_module, settings)
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        email = f"sigterm-{uuid.uuid4().hex[:8]}@example.com"
        await client.post("/register", json={"email": email, "password": "password123"})
        login = asyncio.create_task(
            client.post("/token", data={"username": email, "password": "password123"})
        )
        await asyncio.sleep(0.1)  # the login is being served

        exit_code = await stops_on_sigterm(api, within=15)

        assert (await login).status_code == 200
    # uvicorn shuts down cleanly, then re-raises the signal so the exit status reports it.
    assert exit_code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (tmp_path / "api.log").read_text()


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(raw))
    return lines


async def test_two_of_each_process_handle_every_order_exactly_once(
    pipeline_settings: Settings, engine: AsyncEngine, run_module: RunModule, tmp_path: Path
) -> None:
    """The path past one machine, on one machine: APIs, consumers and workers are stateless
    and share PostgreSQL, Redis and RabbitMQ, so they scale by running more of them."""
    settings = with_settings(
        pipeline_settings,
        process_order_delay_s=0.3,
        log_json=True,
        db_pool_size=3,  # six processes share the machine's PostgreSQL with other test runs
        db_max_overflow=2,
    )
    apis = [await start_api(run_module, settings, log=f"api-{n}") for n in (1, 2)]
    for n in (1, 2):
        await run_module("workers.consumer", settings, log=f"consumer-{n}")
        await run_module("workers.worker", settings, log=f"worker-{n}")
    clients = [httpx.AsyncClient(base_url=base, timeout=10) for _, base in apis]
    try:
        email = f"scale-{uuid.uuid4().hex[:8]}@example.com"
        await clients[0].post("/register", json={"email": email, "password": "password123"})
        login = await clients[1].post("/token", data={"username": email, "password": "password123"})
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        body = {"items": [{"name": "A", "quantity": 1, "price": "1.00"}]}
        created = await asyncio.gather(
            *(clients[n % 2].post("/orders", json=body, headers=auth) for n in range(40))
        )
    finally:
        for client in clients:
            await client.aclose()
    assert {r.status_code for r in created} == {201}
    order_ids = {uuid.UUID(r.json()["id"]) for r in created}

    async def all_processed() -> bool:
        return all([await processed_at(engine, order_id) for order_id in order_ids])

    await wait_for(all_processed, within=60, every=0.2)

    processed = Counter(
        line.get("order_id")
        for n in (1, 2)
        for line in json_lines(tmp_path / f"worker-{n}.log")
        if line.get("message", "").endswith(" processed") and "already" not in line["message"]
    )
    # Each of ours exactly once. The run's database is shared by its tests, so the sweeper or
    # the reconciler may also finish an earlier test's leftover order here: not ours to count.
    assert {str(order_id): processed[str(order_id)] for order_id in order_ids} == {
        str(order_id): 1 for order_id in order_ids
    }
    assert set(processed.values()) == {1}
    first = created[0]
    api_lines = json_lines(tmp_path / "api-1.log") + json_lines(tmp_path / "api-2.log")
    assert any(
        line.get("order_id") == first.json()["id"]
        and line.get("request_id") == first.headers["x-request-id"]
        for line in api_lines
    ), "the API logs the new order with its request id"
