"""What the consumer, the worker and the reconciler agree on: the job's name, its id, its wire
format, and arq's Redis client. What mirrors arq's internals (the enqueue script, the
records' fields) is ``shared.messaging.arq_mirror``.

Jobs and their results are JSON (msgspec) on every side, never arq's default pickle: whoever
can write to Redis could otherwise push a job whose unpickling runs their code in the
worker. A payload that is not a job in our format is refused without being executed
(arq records it as failed) and counted (``orders_worker_jobs_total{outcome="refused"}``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec
from arq.connections import ArqRedis
from arq.jobs import Job

from shared.messaging.arq_mirror import JobRecord, enqueue_unique
from shared.metrics import JOBS
from shared.redis import create_redis
from shared.settings import Settings

logger = logging.getLogger(__name__)

PROCESS_ORDER = "process_order"


def process_order_job_id(order_id: uuid.UUID | str) -> str:
    """One job per order: arq refuses a second job while this id's job or result exists."""
    return f"{PROCESS_ORDER}:{order_id}"


async def enqueue_process_order(
    arq: ArqRedis, queue: str, order_id: str, trace_context: dict[str, str] | None = None
) -> Job | None:
    """The order's job; ``None`` when its job or its result already exists (a duplicate event).

    The consumer runs this once per event: arq's enqueue in one script (``enqueue_unique``).
    ``trace_context`` (W3C headers) is the job's ``trace_context`` argument, which the worker's
    span continues; left out of the record when there is none.
    """
    job_id = process_order_job_id(order_id)
    if trace_context is None:
        return await enqueue_unique(arq, queue, job_id, PROCESS_ORDER, order_id)
    return await enqueue_unique(
        arq, queue, job_id, PROCESS_ORDER, order_id, trace_context=trace_context
    )


def _encode_other(value: Any) -> Any:
    """A failed job's result is its exception: stored as its repr, which is all we show."""
    if isinstance(value, BaseException):
        return repr(value)
    raise TypeError(f"a job may not carry {type(value).__name__}")


_job_encoder = msgspec.json.Encoder(enc_hook=_encode_other)
_job_decoder = msgspec.json.Decoder(JobRecord)


def serialize_job(data: dict[str, Any]) -> bytes:
    return _job_encoder.encode(data)


def deserialize_job(raw: bytes) -> dict[str, Any]:
    """Decode a job or result record; anything else (a pickle, say) is refused and counted."""
    try:
        record = _job_decoder.decode(raw)
    except msgspec.DecodeError:
        JOBS.labels("refused").inc()
        logger.warning("refused a job record that is not ours (%d bytes)", len(raw))
        raise
    return msgspec.structs.asdict(record)


def create_arq_redis(settings: Settings, max_connections: int) -> ArqRedis:
    """arq's client over the pool ``shared.redis`` configures (bounded, with socket timeouts).

    Built without arq's ``create_pool``, which pings at start and gives up after a few tries:
    the consumer, started while Redis is down, holds its messages and retries instead.
    """
    pool = create_redis(settings.redis_url, max_connections=max_connections).connection_pool
    arq = ArqRedis(
        pool_or_conn=pool,
        default_queue_name=settings.arq_queue,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
    )
    # Owns the pool, as ``Redis.from_pool`` would make it (the constructor's flag is
    # deprecated): aclose() disconnects it, leaving no socket open.
    arq.auto_close_connection_pool = True
    return arq
