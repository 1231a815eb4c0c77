"""The session purge: deletes refresh tokens and sessions that ended more than a day ago.

Without it ``refresh_tokens`` only grows: every refresh adds a row, and nothing else ever
removes one (only an account deletion). Every hour (and at a worker's start) it deletes, in
batches of ``SESSION_PURGE_BATCH`` rows committed one by one, the refresh tokens that expired
more than a day ago, then the sessions revoked or past their end (``SESSION_MAX_DAYS`` after
the login) more than a day ago, with their remaining tokens. Full batches repeat, a bounded
number per run; what is left waits for the next run.

Safe with several workers and beside live traffic: arq runs a cron tick once across
workers, and the batches skip rows a request has locked (``queries.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from features.purge_sessions.queries import purge_ended_sessions, purge_expired_tokens
from shared.db import Database
from shared.logs import describe_error
from shared.services import WorkerServices

logger = logging.getLogger(__name__)

MAX_BATCHES_PER_RUN = 100  # per kind of row: a backlog drains over a few runs, then yields

SESSIONS_PURGED = Counter(
    "orders_sessions_purged_total",
    "rows the session purge deleted",
    ["table"],  # refresh_tokens (expired) | sessions (ended; their tokens went with them)
)


async def purge_sessions(db: Database, batch: int) -> int:
    """One run: expired tokens, then ended sessions, each in full batches; the rows deleted."""
    total = 0
    for table, purge in (
        ("refresh_tokens", purge_expired_tokens),
        ("sessions", purge_ended_sessions),
    ):
        for _ in range(MAX_BATCHES_PER_RUN):
            async with db.connect() as conn:
                deleted = await purge(conn, batch)
            SESSIONS_PURGED.labels(table).inc(deleted)
            total += deleted
            if deleted < batch:
                break
    return total


async def purge_sessions_job(ctx: dict[str, Any]) -> int:
    """The cron job; PostgreSQL down: logged, and the next run tries again."""
    services: WorkerServices = ctx["services"]
    try:
        return await purge_sessions(services.db, services.settings.session_purge_batch)
    except (SQLAlchemyError, OSError) as exc:
        logger.warning("session purge stopped: %s", describe_error(exc))
        return 0
