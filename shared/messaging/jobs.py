"""What the consumer, the worker and the reconciler agree on: the job's name, its id, its wire
format, and arq's Redis client.

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
from arq import jobs as arq_jobs
from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import Job
from arq.utils import timestamp_ms

from shared.metrics import JOBS
from shared.redis import create_redis
from shared.settings import Settings

logger = logging.getLogger("workers.jobs")  # its name before it moved here: log queries match it

PROCESS_ORDER = "process_order"


def process_order_job_id(order_id: uuid.UUID | str) -> str:
    """One job per order: arq refuses a second job while this id's job or result exists."""
    return f"{PROCESS_ORDER}:{order_id}"


# arq's enqueue (``ArqRedis.enqueue_job``: no job or result under the id, then the job record
# and its queue entry) as one atomic script: one round trip where arq's WATCH/EXISTS/MULTI
# take three. KEYS: the job key, the result key, the queue; ARGV: the record's lifetime (ms),
# the record, the score (enqueue time, ms), the job id. Returns 1 if it enqueued, else 0.
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


async def enqueue_process_order(arq: ArqRedis, queue: str, order_id: str) -> Job | None:
    """The order's job; ``None`` when its job or its result already exists (a duplicate event).

    Exactly what arq's ``enqueue_job`` stores (the record its ``serialize_job`` makes, with
    arq's default lifetime), in one script: the consumer runs this once per event.
    """
    job_id = process_order_job_id(order_id)
    enqueued_at = timestamp_ms()
    record = arq_jobs.serialize_job(
        PROCESS_ORDER, (order_id,), {}, None, enqueued_at, serializer=arq.job_serializer
    )
    script = arq.register_script(_ENQUEUE)  # a SHA-1 of a short text; no round trip
    made = await script(
        keys=[job_key_prefix + job_id, result_key_prefix + job_id, queue],
        args=[arq.expires_extra_ms, record, enqueued_at, job_id],
    )
    if not made:
        return None
    return Job(job_id, redis=arq, _queue_name=queue, _deserializer=arq.job_deserializer)


class JobRecord(msgspec.Struct, forbid_unknown_fields=True):
    """arq's job (t, f, a, k, et) and result (the rest) records, field for field."""

    t: int | None  # the try the job was enqueued for; None unless the enqueuer set one
    f: str
    a: list[Any]
    k: dict[str, Any]
    et: int
    s: bool | None = None
    r: Any = None
    st: int | None = None
    ft: int | None = None
    q: str | None = None
    id: str | None = None


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
