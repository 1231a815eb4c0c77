"""Helpers for the session tests: log in and refresh through the API, as a client would;
hold a row lock from a second connection, to make a race go one known way."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from shared.db import asyncpg_dsn
from shared.settings import Settings
from tests.accounts import Account

Client = httpx.AsyncClient  # the test client, or one of an API under uvicorn (races)
# Both grants of POST /token answer with these (API.md, "Accounts and sessions").
TOKEN_RESPONSE_FIELDS = {
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "refresh_expires_in",
}


async def login(client: Client, account: Account) -> dict[str, Any]:
    """The password grant's answer for ``account``: access and refresh token."""
    response = await client.post(
        "/token", data={"username": account.email, "password": account.password}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(client: Client, refresh_token: str) -> Any:
    """POST /token with the refresh grant; the raw response."""
    return await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


async def wrong_password_body(client: Client, account: Account) -> Any:
    response = await client.post(
        "/token", data={"username": account.email, "password": "not the password"}
    )
    assert response.status_code == 401
    return response.json()


def token_hash(token: str) -> bytes:
    """The stored form of a refresh token (its SHA-256), to find its row."""
    return hashlib.sha256(token.encode()).digest()


async def revoke(client: Client, token: str) -> Any:
    return await client.post("/token/revoke", data={"token": token})


@asynccontextmanager
async def row_locked(settings: Settings, query: str, *args: object) -> AsyncIterator[Locker]:
    """Hold the row lock ``query`` takes (``… FOR UPDATE``) from a second connection until the
    block ends: requests that need the row wait meanwhile, so a race happens in a known order."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        transaction = conn.transaction()
        await transaction.start()
        assert await conn.fetch(query, *args), "nothing to lock"
        yield Locker(conn)
        await transaction.rollback()
    finally:
        await conn.close()


class Locker:
    """The connection that holds a lock, and how to tell who waits for it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def wait_for_waiters(self, count: int, within: float = 2.0) -> None:
        """Return once ``count`` backends of this database wait for a lock (any lock).

        Quick: the app's statements time out after a few seconds of waiting."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            await self.conn.execute("SELECT pg_stat_clear_snapshot()")  # fresh in a transaction
            waiting = await self.conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting >= count:
                return
            assert asyncio.get_running_loop().time() < deadline, f"{waiting} of {count} waiting"
            await asyncio.sleep(0.02)
