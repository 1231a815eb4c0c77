"""What the consumer and the worker agree on: the job's name, its id, and arq's Redis client."""

from __future__ import annotations

import uuid

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job

from shared.redis import create_redis
from shared.settings import Settings

PROCESS_ORDER = "process_order"


def process_order_job_id(order_id: uuid.UUID | str) -> str:
    """One job per order: arq refuses a second job while this id's job or result exists."""
    return f"{PROCESS_ORDER}:{order_id}"


class NotEnqueued(Exception):
    """arq enqueued nothing, yet no job for the order exists."""


async def enqueue_process_order(arq: ArqRedis, queue: str, order_id: str) -> Job | None:
    """The order's job; ``None`` when it already exists (a duplicate event).

    arq also answers ``None`` when its transaction was aborted (redis-py reports a
    connection lost while watching the job's key as a ``WatchError``): then no job may
    exist, and acking the event would lose the order. So ``None`` is trusted only once
    the job or its result is seen in Redis; otherwise ``NotEnqueued`` is raised and the
    caller retries as for any other failure.
    """
    job_id = process_order_job_id(order_id)
    job = await arq.enqueue_job(PROCESS_ORDER, order_id, _job_id=job_id, _queue_name=queue)
    if job is None and not await arq.exists(job_key_prefix + job_id, result_key_prefix + job_id):
        raise NotEnqueued(f"arq enqueued nothing and no job {job_id} exists")
    return job


def create_arq_redis(settings: Settings, max_connections: int) -> ArqRedis:
    """arq's client over the pool ``shared.redis`` configures (bounded, with socket timeouts).

    Built without arq's ``create_pool``, which pings at start and gives up after a few tries:
    the consumer, started while Redis is down, holds its messages and retries instead.
    """
    pool = create_redis(settings.redis_url, max_connections=max_connections).connection_pool
    return ArqRedis(pool_or_conn=pool, default_queue_name=settings.arq_queue)
