"""Migration 0004 (sessions) on a database that has refresh tokens already: each family gets
its session, a token that outlived its family's revoke is revoked with it, and the downgrade
gives the tokens their own state back."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from migrations.admin import PROJECT_ROOT, drop_database, migrate
from shared.db import asyncpg_dsn
from shared.settings import Settings

BEFORE = "0003_refresh_tokens"


def downgrade(database_url: str, revision: str) -> None:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    command.downgrade(config, revision)


@pytest.fixture
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """A scratch database at 0003, dropped after the test."""
    url = make_url(settings.database_url)
    scratch = url.set(database=f"{url.database}_m{secrets.token_hex(3)}")
    rendered = scratch.render_as_string(hide_password=False)
    await asyncio.to_thread(migrate, rendered, BEFORE)
    yield rendered
    await drop_database(rendered)


async def test_0004_gives_every_family_a_session_and_the_downgrade_undoes_it(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        user = await conn.fetchval(
            "INSERT INTO users (email, password_hash) VALUES ('m@example.com', $1) RETURNING id",
            b"x" * 60,
        )
        revoked, live = uuid.uuid4(), uuid.uuid4()
        for family, created_ago, revoked_ago in (
            (revoked, timedelta(days=3), timedelta(days=1)),
            (revoked, timedelta(days=2), None),  # issued by a refresh that raced the revoke
            (live, timedelta(days=5), None),
            (live, timedelta(days=4), None),
        ):
            await conn.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at,"
                " expires_at, revoked_at) VALUES ($1, $2, $3, now() - $4::interval,"
                " now() + interval '10 days', now() - $5::interval)",
                secrets.token_bytes(32),
                family,
                user,
                created_ago,
                revoked_ago,
            )

        await asyncio.to_thread(migrate, database_url)

        sessions = {
            row["id"]: row
            for row in await conn.fetch(
                "SELECT id, user_id, now() - started_at AS age, expires_at - started_at AS span,"
                " revoked_at IS NOT NULL AS revoked FROM sessions"
            )
        }
        assert set(sessions) == {revoked, live}
        assert sessions[revoked]["revoked"]
        assert not sessions[live]["revoked"]
        assert timedelta(days=5) <= sessions[live]["age"] < timedelta(days=5, minutes=1)
        assert {row["span"] for row in sessions.values()} == {timedelta(days=90)}
        await conn.execute("DELETE FROM sessions WHERE id = $1", revoked)  # tokens go along
        assert await conn.fetchval("SELECT count(*) FROM refresh_tokens") == 2

        await asyncio.to_thread(downgrade, database_url, BEFORE)

        assert not await conn.fetchval("SELECT to_regclass('sessions') IS NOT NULL")
        states = await conn.fetch(
            "SELECT revoked_at FROM refresh_tokens WHERE family_id = $1", live
        )
        assert [row["revoked_at"] for row in states] == [None, None]
        await asyncio.to_thread(migrate, database_url)  # and up again
    finally:
        await conn.close()


async def test_the_downgrade_keeps_a_revoked_sessions_tokens_revoked(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        user = await conn.fetchval(
            "INSERT INTO users (email, password_hash) VALUES ('d@example.com', $1) RETURNING id",
            b"x" * 60,
        )
        session = uuid.uuid4()
        await conn.execute(
            "INSERT INTO sessions (id, user_id, expires_at, revoked_at)"
            " VALUES ($1, $2, now() + interval '90 days', now())",
            session,
            user,
        )
        await conn.execute(
            "INSERT INTO refresh_tokens (token_hash, family_id, expires_at)"
            " VALUES ($1, $2, now() + interval '15 days')",
            secrets.token_bytes(32),
            session,
        )
        await asyncio.to_thread(downgrade, database_url, BEFORE)
        token = await conn.fetchrow("SELECT user_id, revoked_at FROM refresh_tokens")
        assert token["user_id"] == user
        assert token["revoked_at"] is not None
        await conn.execute("DELETE FROM users")  # the token goes with its user again
        assert await conn.fetchval("SELECT count(*) FROM refresh_tokens") == 0
    finally:
        await conn.close()
