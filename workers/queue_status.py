"""``just jobs``: what the pipeline is doing right now, read-only (Flower's view, for arq).

Queued, deferred (waiting to retry) and running ``process_order`` jobs, the recent failures,
the outbox rows not yet published to RabbitMQ, and the reconciler's work: how many jobs it
enqueued again, and the orders still failing after that (PostgreSQL's view, which survives
Redis losing its data).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from arq.jobs import DeserializationError, JobResult, deserialize_result
from redis.asyncio import Redis

from features.reconcile_orders.job import reenqueued_counts_key
from features.reconcile_orders.queries import (
    FailingOrder,
    count_failing_orders,
    oldest_failing_orders,
)
from features.sweep_outbox.queries import outbox_backlog
from shared.db import Database, create_engine
from shared.messaging.arq_mirror import RESULT_KEYS, in_progress_key
from shared.messaging.jobs import deserialize_job
from shared.redis import create_redis
from shared.settings import Settings, load_settings

RESULT_SCAN_LIMIT = 10_000  # bound the scan of finished results on a busy Redis
SHOWN_FAILURES = 10


@dataclass
class QueueReport:
    queued: int = 0
    deferred: int = 0
    running: list[str] = field(default_factory=list)
    succeeded: int = 0
    failed: list[JobResult] = field(default_factory=list)
    outbox_backlog: int = 0
    reenqueued: dict[str, int] = field(default_factory=dict)
    failing_orders: int = 0
    oldest_failing: list[FailingOrder] = field(default_factory=list)


async def queue_report(settings: Settings, redis: Redis, db: Database) -> QueueReport:
    async with db.connect() as conn:
        failing_orders = await count_failing_orders(conn)
        oldest_failing = await oldest_failing_orders(conn, SHOWN_FAILURES)
        backlog = await outbox_backlog(conn)
    report = QueueReport(
        outbox_backlog=backlog,
        failing_orders=failing_orders,
        oldest_failing=oldest_failing,
    )
    counts: dict[bytes, bytes] = await redis.hgetall(reenqueued_counts_key(settings))  # type: ignore[misc]
    report.reenqueued = {reason.decode(): int(count) for reason, count in counts.items()}
    now_ms = time.time() * 1000
    entries: list[tuple[bytes, float]] = await redis.zrange(
        settings.arq_queue, 0, -1, withscores=True
    )
    for job_id, score in entries:
        if await redis.exists(in_progress_key(job_id.decode())):
            report.running.append(job_id.decode())
        elif score > now_ms:
            report.deferred += 1
        else:
            report.queued += 1
    seen = 0
    async for key in redis.scan_iter(match=RESULT_KEYS, count=1000):
        seen += 1
        if seen > RESULT_SCAN_LIMIT:
            break
        raw = await redis.get(key)
        if raw is None:
            continue
        try:
            result = deserialize_result(raw, deserializer=deserialize_job)
        except DeserializationError:
            continue
        if result.queue_name != settings.arq_queue:
            continue
        if result.success:
            report.succeeded += 1
        else:
            report.failed.append(result)
    report.failed.sort(key=lambda r: r.finish_time, reverse=True)
    return report


def render(report: QueueReport, settings: Settings) -> str:
    lines = [
        f"arq queue {settings.arq_queue}",
        f"  queued       {report.queued}",
        f"  deferred     {report.deferred}  (waiting to retry)",
        f"  running      {len(report.running)}",
        *(f"    {job_id}" for job_id in report.running[:SHOWN_FAILURES]),
        f"  succeeded    {report.succeeded}  (results kept for an hour)",
        f"  failed       {len(report.failed)}",
        *(
            f"    {r.job_id}  try {r.job_try}  {r.finish_time:%H:%M:%S}  {r.result!r}"
            for r in report.failed[:SHOWN_FAILURES]
        ),
        f"outbox backlog {report.outbox_backlog}  (events not yet on RabbitMQ)",
        "reconciler",
        *(
            f"  re-enqueued  {report.reenqueued.get(reason, 0)}  ({why})"
            for reason, why in (("lost", "job gone from Redis"), ("failed", "job failed for good"))
        ),
        f"  failing      {report.failing_orders}  (unprocessed orders re-enqueued at least once)",
        *(
            f"    {o.id}  attempts {o.attempts}  created {o.created_at:%Y-%m-%d %H:%M:%S}"
            f"  next look {o.next_look_at:%H:%M:%S}"
            if o.next_look_at
            else f"    {o.id}  attempts {o.attempts}"
            for o in report.oldest_failing
        ),
    ]
    return "\n".join(lines)


async def main() -> None:
    settings = load_settings()
    redis = create_redis(settings.redis_url, max_connections=4)
    db = Database(create_engine(settings))
    try:
        print(render(await queue_report(settings, redis, db), settings))
    finally:
        await redis.aclose()
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
