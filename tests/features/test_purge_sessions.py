"""The session purge (features/purge_sessions/), against real PostgreSQL on a database of its
own (the session's fills with other tests' sessions): what ended more than a day ago goes, in
bounded batches; everything else stays."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from features.purge_sessions.job import purge_sessions
from features.purge_sessions.queries import purge_ended_sessions
from shared.db import Database, asyncpg_dsn, create_engine
from shared.settings import Settings
from tests.pipeline import StartWorker, wait_for
from tests.sessions import row_locked

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
JUST_OVER_A_DAY, JUST_UNDER_A_DAY = DAY + HOUR, DAY - HOUR


@pytest.fixture
async def db(own_database: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(own_database.database_url))
    yield conn
    await conn.close()


@pytest.fixture
async def purge_engine(own_database: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(own_database)
    yield engine
    await engine.dispose()


@pytest.fixture
async def user(db: asyncpg.Connection) -> int:
    user_id: int = await db.fetchval(
        "INSERT INTO users (email, password_hash) VALUES ($1, $2) RETURNING id",
        f"purge-{secrets.token_hex(6)}@example.com",
        b"x" * 60,
    )
    return user_id


async def new_session(
    db: asyncpg.Connection,
    user_id: int,
    *,
    ends_in: timedelta = 80 * DAY,
    revoked_ago: timedelta | None = None,
) -> uuid.UUID:
    """A session ending ``ends_in`` from now (negative: ended that long ago)."""
    session_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO sessions (id, user_id, started_at, expires_at, revoked_at)"
        " VALUES ($1, $2, now() + $3::interval - interval '90 days', now() + $3::interval,"
        " now() - $4::interval)",
        session_id,
        user_id,
        ends_in,
        revoked_ago,
    )
    return session_id


async def new_token(
    db: asyncpg.Connection, session_id: uuid.UUID, *, expires_in: timedelta, used: bool = False
) -> bytes:
    token_hash = secrets.token_bytes(32)
    await db.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, expires_at, used_at)"
        " VALUES ($1, $4, now() + $2::interval, CASE WHEN $3 THEN now() END)",
        token_hash,
        expires_in,
        used,
        session_id,
    )
    return token_hash


async def sessions_left(db: asyncpg.Connection) -> set[uuid.UUID]:
    return {row["id"] for row in await db.fetch("SELECT id FROM sessions")}


async def tokens_left(db: asyncpg.Connection) -> set[bytes]:
    return {row["token_hash"] for row in await db.fetch("SELECT token_hash FROM refresh_tokens")}


async def test_the_purge_deletes_what_ended_more_than_a_day_ago_and_nothing_else(
    db: asyncpg.Connection, purge_engine: AsyncEngine, user: int
) -> None:
    revoked_long_ago = await new_session(db, user, revoked_ago=JUST_OVER_A_DAY)
    of_revoked = await new_token(db, revoked_long_ago, expires_in=10 * DAY)
    revoked_lately = await new_session(db, user, revoked_ago=JUST_UNDER_A_DAY)
    of_revoked_lately = await new_token(db, revoked_lately, expires_in=10 * DAY)
    ended_long_ago = await new_session(db, user, ends_in=-JUST_OVER_A_DAY)
    of_ended = await new_token(db, ended_long_ago, expires_in=-JUST_OVER_A_DAY)
    ended_lately = await new_session(db, user, ends_in=-JUST_UNDER_A_DAY)
    live = await new_session(db, user)
    expired_long_ago = await new_token(db, live, expires_in=-JUST_OVER_A_DAY, used=True)
    expired_lately = await new_token(db, live, expires_in=-JUST_UNDER_A_DAY, used=True)
    used = await new_token(db, live, expires_in=10 * DAY, used=True)  # a replay must be seen
    current = await new_token(db, live, expires_in=15 * DAY)

    deleted = await purge_sessions(Database(purge_engine), batch=100)

    assert deleted == 4  # two expired tokens, two ended sessions (their tokens went along)
    assert await sessions_left(db) == {revoked_lately, ended_lately, live}
    assert await tokens_left(db) == {of_revoked_lately, expired_lately, used, current}
    assert not {of_revoked, of_ended, expired_long_ago} & await tokens_left(db)
    assert await purge_sessions(Database(purge_engine), batch=100) == 0


async def test_the_purge_works_in_batches_of_the_size_set(
    db: asyncpg.Connection, purge_engine: AsyncEngine, user: int
) -> None:
    for _ in range(5):
        await new_session(db, user, revoked_ago=2 * DAY)

    async def purge_a_batch() -> int:
        async with Database(purge_engine).connect() as conn:
            return await purge_ended_sessions(conn, 2)

    assert [await purge_a_batch() for _ in range(4)] == [2, 2, 1, 0]

    for _ in range(5):
        await new_session(db, user, revoked_ago=2 * DAY)
    assert (
        await purge_sessions(Database(purge_engine), batch=2) == 5
    )  # full batches repeat within a run
    assert await sessions_left(db) == set()


async def test_a_session_a_request_holds_is_left_for_the_next_run(
    own_database: Settings, db: asyncpg.Connection, purge_engine: AsyncEngine, user: int
) -> None:
    held = await new_session(db, user, revoked_ago=2 * DAY)
    free = await new_session(db, user, revoked_ago=2 * DAY)
    lock = "SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE"
    async with row_locked(own_database, lock, held):
        assert await purge_sessions(Database(purge_engine), batch=100) == 1  # no wait for the lock
    assert await sessions_left(db) == {held}
    assert free not in await sessions_left(db)
    assert await purge_sessions(Database(purge_engine), batch=100) == 1


async def test_the_worker_runs_the_purge(
    own_database: Settings, db: asyncpg.Connection, user: int, start_worker: StartWorker
) -> None:
    ended = await new_session(db, user, ends_in=-2 * DAY)
    live = await new_session(db, user)

    await start_worker(own_database)  # the hourly cron also runs at start-up

    async def purged() -> bool:
        return ended not in await sessions_left(db)

    await wait_for(purged, within=15)
    assert await sessions_left(db) == {live}
