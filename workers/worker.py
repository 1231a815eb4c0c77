"""The arq worker: runs ``process_order`` jobs, sweeps the outbox and reconciles every few seconds,
and purges ended sessions every hour.

This module only wires arq to the jobs: the use cases are ``features/process_order/``,
``features/sweep_outbox/``, ``features/reconcile_orders/`` and ``features/purge_sessions/``;
here are their arq options and ticks, and the process's connections. The arq worker itself
is ``shared.messaging.arq_mirror.BatchClaimWorker`` (arq's, with a cheaper poll).

Run with ``python -m workers.worker`` (``just worker``); tests build one with
``create_worker(settings, handle_signals=False, ...)`` and run it as a task.

Shutdown (SIGTERM or SIGINT, arq's own handlers with ``job_completion_wait``): the worker
stops picking up jobs, gives the ones in flight up to ``JOB_COMPLETION_WAIT_S`` to finish,
then cancels the rest. arq treats a cancelled job as "run again": it stays in the queue and
the next worker runs it (the try counts towards ``JOB_MAX_TRIES``). ``process_order`` is
idempotent by order id, so running a job twice is harmless.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvloop
from arq.connections import ArqRedis
from arq.cron import cron
from arq.worker import Worker, func

from features.process_order.job import process_order
from features.purge_sessions.job import purge_sessions_job
from features.reconcile_orders.job import reconcile_job
from features.sweep_outbox.job import sweep_outbox_job
from shared import tracing
from shared.db import Database, create_engine
from shared.logs import configure_logging
from shared.messaging.arq_mirror import BatchClaimWorker
from shared.messaging.bus import EventBus
from shared.messaging.jobs import PROCESS_ORDER, create_arq_redis, deserialize_job, serialize_job
from shared.messaging.outbox import OutboxRelay
from shared.metrics import serve_metrics
from shared.orders.cache import OrderCache
from shared.services import WorkerServices
from shared.settings import Settings, load_settings

JOB_TIMEOUT_S = 30
POLL_DELAY_S = 0.1
JOB_COMPLETION_WAIT_S = 8  # inside Docker's default 10 s stop timeout (and Kubernetes' 30 s)
# Long enough that a redelivered event finds the result and makes no second job; after it
# expires a late duplicate runs again and finds processed_at already set.
KEEP_RESULT_S = 3600
SWEEP_TIMEOUT_S = 60
RECONCILE_TIMEOUT_S = 60
# arq marks a running job in progress for the longest timeout of any function plus 10 s, and a
# worker killed mid-job leaves that mark behind: no timeout here may exceed the others (a
# 300 s purge held every killed worker's orders for 310 s; tests/workers/test_worker.py).
PURGE_SESSIONS_TIMEOUT_S = 60


async def startup(ctx: dict[str, Any]) -> None:
    """Build this process's services once, as ``ctx["services"]``: what every job reads.

    arq puts our ``settings`` and its own Redis client in ``ctx``; that client serves the
    order cache too.
    """
    settings: Settings = ctx["settings"]
    redis: ArqRedis = ctx["redis"]
    bus = EventBus(settings)
    # max_overflow=0: jobs queue for the pool's connections
    db = Database(create_engine(settings, max_overflow=0))
    tracing.trace_engine(db.engine)
    ctx["services"] = WorkerServices(
        settings=settings,
        db=db,
        redis=redis,
        bus=bus,
        order_cache=OrderCache(redis, settings.redis_prefix, settings.cache_ttl_seconds),
        outbox_relay=OutboxRelay(bus, db),
    )
    await bus.start()


async def shutdown(ctx: dict[str, Any]) -> None:
    services: WorkerServices | None = ctx.get("services")
    if services is not None:
        await services.outbox_relay.stop()  # what the last jobs staged, before the bus goes
        await services.bus.stop()
        await services.db.dispose()


def worker_settings(settings: Settings) -> dict[str, Any]:
    """arq ``Worker`` arguments from our settings (everything but the Redis client)."""
    return {
        "functions": [
            func(
                process_order,
                name=PROCESS_ORDER,
                timeout=JOB_TIMEOUT_S,
                keep_result=KEEP_RESULT_S,
                max_tries=settings.job_max_tries,
            )
        ],
        # A cron's job ids derive from its name and tick, so of several workers one runs each
        # tick; the queue in the name keeps deployments (and test runs) that share a Redis
        # from suppressing each other's runs.
        "cron_jobs": [
            cron(
                sweep_outbox_job,
                name=f"cron:sweep_outbox:{settings.arq_queue}",
                second=set(range(0, 60, settings.outbox_sweep_interval_s)),
                run_at_startup=True,
                timeout=SWEEP_TIMEOUT_S,
                max_tries=1,
            ),
            cron(
                reconcile_job,
                name=f"cron:reconcile:{settings.arq_queue}",
                second=set(range(0, 60, settings.reconcile_interval_s)),
                run_at_startup=True,
                timeout=RECONCILE_TIMEOUT_S,
                max_tries=1,
            ),
            cron(
                purge_sessions_job,
                name=f"cron:purge_sessions:{settings.arq_queue}",
                minute=0,  # hourly, and at start-up
                second=0,
                run_at_startup=True,
                timeout=PURGE_SESSIONS_TIMEOUT_S,
                max_tries=1,
            ),
        ],
        "queue_name": settings.arq_queue,
        "ctx": {"settings": settings},
        "on_startup": startup,
        "on_shutdown": shutdown,
        # Jobs mostly sleep, so many overlap; each holds a pooled Redis/PostgreSQL connection
        # only for a few milliseconds.
        "max_jobs": settings.worker_max_jobs,
        "job_timeout": JOB_TIMEOUT_S,
        "max_tries": settings.job_max_tries,
        "keep_result": KEEP_RESULT_S,
        "job_completion_wait": JOB_COMPLETION_WAIT_S,
        # arq's default is 0.5 s: up to that long between a job's enqueue and its start. A poll
        # costs one ZRANGEBYSCORE (the claims are batched, running jobs skipped: BatchClaimWorker).
        "poll_delay": POLL_DELAY_S,
        "health_check_interval": 60,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
    }


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    """An arq worker for ``settings``; ``overrides`` are passed to ``Worker`` (tests use them)."""
    # arq's bookkeeping and the cache share one pool: a connection per running job, and some.
    redis = create_arq_redis(settings, max_connections=settings.worker_max_jobs + 16)
    return BatchClaimWorker(**{**worker_settings(settings), "redis_pool": redis, **overrides})


def main() -> None:
    settings = load_settings()
    configure_logging(settings)
    tracing.start_tracing(settings, tracing.WORKER)
    serve_metrics(settings.worker_metrics_port, settings.metrics_host)
    # uvloop, as uvicorn gives the API: each job's Redis and PostgreSQL round trips cost
    # less CPU on it (BENCHMARKS.md).
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        create_worker(settings).run()
    finally:
        loop.close()


if __name__ == "__main__":
    main()
