"""The user directory: "does user N still exist?" answered from memory, kept by LISTEN/NOTIFY.

A request is authenticated by its JWT alone. The only fact a claim cannot carry is whether
the user still exists, so each process remembers the ids it has seen in the database and
forgets one the moment PostgreSQL announces its deletion (``NOTIFY user_deleted``, sent by a
trigger): the hot path touches no table, and a deleted user's token stops working at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import select

from shared.db import COMMAND_TIMEOUT_S, CONNECT_TIMEOUT_S, Database
from shared.models import User

logger = logging.getLogger(__name__)

USER_DELETED_CHANNEL = "user_deleted"


def still_current(
    listening: bool, lost_at: float | None, now: float, max_staleness_s: float
) -> bool:
    """Whether what the directory remembers may still be trusted at ``now``.

    Yes while deletions reach the process (``listening``), and before the link was ever up
    (``lost_at`` None: nothing was remembered without it); after a loss, for
    ``max_staleness_s`` seconds from ``lost_at`` (both on one monotonic clock).
    """
    if listening or lost_at is None:
        return True
    return now - lost_at <= max_staleness_s


class UserDirectory:
    """Answers "does user N still exist?" from memory, kept honest by LISTEN/NOTIFY.

    When the LISTEN link drops (PostgreSQL down or unreachable), the ids already known keep
    being vouched for, for at most ``USER_DIRECTORY_MAX_STALENESS_S``: their cached reads go on
    through the outage. The price: a user deleted meanwhile (through another process that
    still reaches PostgreSQL) keeps that long. Past the bound, and for ids not known before,
    the database is asked, so the request fails with 503 until it answers. Once the link is
    back, the ids remembered across the gap are checked against the table before anything else
    is trusted to be current: deletions missed during it are applied.
    """

    def __init__(
        self,
        db: Database,
        dsn: str,
        max_staleness_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._dsn = dsn  # the LISTEN connection's, outside the pool: it is held for good
        self._max_staleness_s = max_staleness_s
        self._clock = clock
        self._known: set[int] = set()
        self._listening = False
        self._lost_at: float | None = None  # monotonic time the link was lost, while it is
        # Bumped by every deletion notice and every (re)connect of the listener: a lookup that
        # saw the user before a bump may be stale, so its answer is not remembered.
        self._epoch = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """True while deletions reach this process (only then are ids remembered)."""
        return self._listening

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="user-directory-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def vouches_for(self, user_id: int) -> bool:
        """Known, and either deletions reach us or the link was lost less than the bound ago."""
        if user_id not in self._known:
            return False
        if still_current(self._listening, self._lost_at, self._clock(), self._max_staleness_s):
            return True
        self._known.clear()  # too old to trust: from now on every id is looked up
        return False

    async def exists(self, user_id: int) -> bool:
        if self.vouches_for(user_id):
            return True
        epoch, listening = self._epoch, self._listening
        async with self._db.connect() as conn:
            found = await conn.scalar(select(User.id).where(User.id == user_id))
        # Only remember while deletions can reach us, and only if no deletion notice (or
        # reconnect) arrived during the lookup: it may have been about this very user.
        if found is not None and listening and epoch == self._epoch:
            self._known.add(user_id)
        return found is not None

    def forget(self, user_id: int) -> None:
        """The user was deleted by this process: refuse their tokens here before the notice."""
        self._epoch += 1
        self._known.discard(user_id)

    def _forget(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._epoch += 1
        with contextlib.suppress(ValueError):
            self._known.discard(int(payload))

    async def _recheck_known(self, conn: asyncpg.Connection) -> None:
        """After a gap: drop the remembered ids whose users were deleted while we were deaf.

        Runs once LISTEN is on again, so a deletion after this query arrives as a notice; one
        that lands during it is applied by ``_forget`` and not undone here (ids only leave).
        """
        remembered = list(self._known)
        if not remembered:
            return
        rows = await conn.fetch(
            "SELECT id FROM users WHERE id = ANY($1::int[])", remembered, timeout=COMMAND_TIMEOUT_S
        )
        gone = set(remembered) - {row["id"] for row in rows}
        self._known -= gone
        if gone:
            logger.info("user directory: %d users deleted during the gap forgotten", len(gone))

    async def _listen(self) -> None:
        """Hold one LISTEN connection; on a loss keep vouching (bounded) and reconnect."""
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
                await conn.add_listener(USER_DELETED_CHANNEL, self._forget)
                await self._recheck_known(conn)
                self._epoch += 1
                self._listening, self._lost_at, delay = True, None, 0.5
                while not conn.is_closed():
                    await asyncio.sleep(1)
                    await conn.execute("SELECT 1", timeout=2)  # notices a dead or stalled link
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: mark the gap and retry
                logger.warning("user directory listener lost: %s", exc)
            finally:
                if self._listening or self._lost_at is None:
                    self._lost_at = self._clock()
                self._listening = False
                self._epoch += 1
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
