"""Removing exactly what one run made from the machine's shared servers."""

from __future__ import annotations

import contextlib
from collections.abc import Collection

import aio_pika

from migrations.admin import drop_database
from shared.messaging.arq_mirror import JOB_KEYS
from shared.messaging.bus import Topology
from shared.redis import create_redis
from shared.settings import Settings


async def forget_redis_data(settings: Settings, order_ids: Collection[str] = ()) -> int:
    """Delete the run's keys from the shared Redis, as a restart without persistence would.

    Never FLUSHDB: other runs share this Redis. The run's keys are those under its prefix
    (cache, limiter, arq queue) plus arq's per-job keys (``arq:job:…``, ``arq:result:…``,
    ``arq:in-progress:…``, ``arq:retry:…``), which arq does not namespace: they are picked by
    the run's order ids (``process_order:<id>``) and arq queue name (cron job ids).
    Returns how many keys went.
    """
    redis = create_redis(settings.redis_url)
    deleted = 0
    try:
        async for key in redis.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
            deleted += await redis.delete(key)
        async for key in redis.scan_iter(match=JOB_KEYS, count=1000):
            text = key.decode() if isinstance(key, bytes) else str(key)
            job_id = text.split(":", 2)[-1] if text.count(":") >= 2 else ""
            order_id = job_id.rpartition(":")[2]
            if settings.arq_queue in text or order_id in order_ids:
                deleted += await redis.delete(key)
    finally:
        await redis.aclose()
    return deleted


async def delete_topology(settings: Settings) -> None:
    """The run's exchanges and queues (RabbitMQ), through an administrator's URL."""
    connection = await aio_pika.connect(settings.rabbitmq_url, timeout=10)
    async with connection:
        await Topology(settings).delete(await connection.channel())


async def remove_run(settings: Settings, order_ids: Collection[str] = ()) -> None:
    """The run's database, Redis keys, exchanges and queues; each part is attempted even if
    another fails (a run that broke half-way still leaves nothing behind)."""
    with contextlib.suppress(Exception):
        await drop_database(settings.database_url)
    with contextlib.suppress(Exception):
        await forget_redis_data(settings, order_ids)
    with contextlib.suppress(Exception):
        await delete_topology(settings)
