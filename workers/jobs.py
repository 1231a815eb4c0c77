"""What the consumer and the worker agree on: the job's name, its id, and arq's Redis client."""

from __future__ import annotations

import uuid

from arq.connections import ArqRedis
from arq.jobs import Job

from shared.redis import create_redis
from shared.settings import Settings

PROCESS_ORDER = "process_order"


def process_order_job_id(order_id: uuid.UUID | str) -> str:
    """One job per order: arq refuses a second job while this id's job or result exists."""
    return f"{PROCESS_ORDER}:{order_id}"


async def enqueue_process_order(arq: ArqRedis, queue: str, order_id: str) -> Job | None:
    """The one way a job is made (consumer, reconciler); None if this order's job exists."""
    return await arq.enqueue_job(
        PROCESS_ORDER, order_id, _job_id=process_order_job_id(order_id), _queue_name=queue
    )


def create_arq_redis(settings: Settings, max_connections: int) -> ArqRedis:
    """arq's client over the pool ``shared.redis`` configures (bounded, with socket timeouts).

    Built without arq's ``create_pool``, which pings at start and gives up after a few tries:
    the consumer, started while Redis is down, holds its messages and retries instead.
    """
    pool = create_redis(settings.redis_url, max_connections=max_connections).connection_pool
    return ArqRedis(pool_or_conn=pool, default_queue_name=settings.arq_queue)
