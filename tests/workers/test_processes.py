"""The entry points, run as the real processes: they work, and SIGTERM stops them gracefully."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
from aio_pika.abc import AbstractChannel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.bus import EventBus
from shared.events import mark_sent, publish_staged
from shared.settings import Settings
from tests.conftest import with_settings
from tests.workers.conftest import OrderFactory, processed_at, ready_count, wait_for
from workers.jobs import PROCESS_ORDER, create_arq_redis, process_order_job_id

PROJECT_ROOT = Path(__file__).resolve().parents[2]

Process = asyncio.subprocess.Process
RunModule = Callable[[str, Settings], Awaitable[Process]]


def environment(settings: Settings) -> dict[str, str]:
    """``settings`` as the environment variables ``load_settings`` reads."""
    env = dict(os.environ)
    for name, value in msgspec.structs.asdict(settings).items():
        if value is not None:
            env[name.upper()] = str(value)
    return env


@pytest.fixture
async def run_module(tmp_path: Path) -> AsyncIterator[RunModule]:
    """``await run_module("workers.worker", settings)`` starts ``python -m``; killed at the end."""
    started: list[Process] = []

    async def run(module: str, settings: Settings) -> Process:
        log = (tmp_path / f"{module}.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            cwd=PROJECT_ROOT,
            env=environment(settings),
            stdout=log,
            stderr=log,
        )
        started.append(process)
        return process

    yield run
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stops_on_sigterm(process: Process, within: float) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), within)


async def test_worker_process_finishes_its_running_job_on_sigterm(
    pipeline_settings: Settings,
    engine: AsyncEngine,
    redis: Redis,
    new_order: OrderFactory,
    run_module: RunModule,
) -> None:
    settings = with_settings(pipeline_settings, process_order_delay_s=2.0)
    event = await new_order()
    await mark_sent(engine, [event.event_id])
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


async def test_consumer_process_consumes_and_stops_on_sigterm(
    pipeline_settings: Settings,
    bus: EventBus,
    engine: AsyncEngine,
    redis: Redis,
    rabbitmq: AbstractChannel,
    new_order: OrderFactory,
    run_module: RunModule,
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
