"""The session purge's statements: each deletes one bounded batch, one statement committed
alone (the job runs them on autocommit connections).

``FOR UPDATE SKIP LOCKED``: a row a request holds (a refresh, a revoke) is left for the next
run, so the purge never waits for a request nor makes one wait long. Both scans are index
range scans (``ix_refresh_tokens_expires_at``, ``ix_sessions_expires_at`` and the partial
``ix_sessions_revoked_at``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import InstrumentedAttribute

from shared.models import LoginSession, RefreshToken

# Ended rows stay this long: a used token replayed just after its end is still recognised
# as a replay, and a session that just ended can still be looked at.
RETENTION = timedelta(days=1)


def _cutoff() -> ColumnElement[datetime]:
    return func.now() - RETENTION


async def purge_expired_tokens(conn: AsyncConnection, batch: int) -> int:
    """Delete up to ``batch`` refresh tokens that expired more than RETENTION ago."""
    return await _delete_batch(
        conn, RefreshToken.token_hash, RefreshToken.expires_at < _cutoff(), batch
    )


async def purge_ended_sessions(conn: AsyncConnection, batch: int) -> int:
    """Delete up to ``batch`` sessions revoked or past their end more than RETENTION ago.

    Their remaining tokens go with them (ON DELETE CASCADE): the unexpired ones of a revoked
    session, at most REFRESH_TOKEN_EXPIRE_DAYS' worth of refreshes each, as older ones are
    purged as expired first.
    """
    ended = or_(LoginSession.revoked_at < _cutoff(), LoginSession.expires_at < _cutoff())
    return await _delete_batch(conn, LoginSession.id, ended, batch)


async def _delete_batch(
    conn: AsyncConnection,
    key: InstrumentedAttribute[Any],
    ended: ColumnElement[bool],
    batch: int,
) -> int:
    """One DELETE of at most ``batch`` rows of ``key``'s table that ``ended`` picks."""
    picked = select(key).where(ended).limit(batch).with_for_update(skip_locked=True)
    deleted = await conn.scalars(
        delete(key.class_).where(key.in_(picked.scalar_subquery())).returning(key)
    )
    return len(deleted.all())
