"""POST /token/revoke (RFC 7009): logs out the refresh token's whole session, always 200."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from shared.settings import Settings
from tests.accounts import Account
from tests.apps import StartApp, token_limited
from tests.sessions import login, refresh, revoke, row_locked, token_hash

Client = AsyncTestClient[Litestar]


async def test_revoking_a_refresh_token_ends_its_session(client: Client, alice: Account) -> None:
    session = await login(client, alice)
    rotated = (await refresh(client, session["refresh_token"])).json()

    response = await client.post("/token/revoke", data={"token": rotated["refresh_token"]})

    assert response.status_code == 200
    assert (await refresh(client, rotated["refresh_token"])).status_code == 401


async def test_revoking_an_older_token_of_the_session_ends_it_too(
    client: Client, alice: Account
) -> None:
    session = await login(client, alice)
    rotated = (await refresh(client, session["refresh_token"])).json()
    assert (await client.post("/token/revoke", data={"token": session["refresh_token"]})).is_success
    assert (await refresh(client, rotated["refresh_token"])).status_code == 401


async def test_access_tokens_stay_valid_until_they_expire(client: Client, alice: Account) -> None:
    session = await login(client, alice)
    await client.post("/token/revoke", data={"token": session["refresh_token"]})
    headers = {"Authorization": f"Bearer {session['access_token']}"}
    assert (await client.get("/users/me", headers=headers)).status_code == 200


async def test_revoking_leaves_the_users_other_sessions_alone(
    client: Client, alice: Account
) -> None:
    laptop = await login(client, alice)
    phone = await login(client, alice)
    await client.post("/token/revoke", data={"token": laptop["refresh_token"]})
    assert (await refresh(client, phone["refresh_token"])).status_code == 200


@pytest.mark.parametrize(
    "token", ["A" * 43, "not a token", "x" * 512, "eyJhbGciOiJIUzI1NiJ9.e30.sig"]
)
async def test_any_token_is_answered_200_unknown_ones_too(client: Client, token: str) -> None:
    response = await client.post("/token/revoke", data={"token": token})
    assert response.status_code == 200


async def test_revoking_twice_is_200(client: Client, alice: Account) -> None:
    token = (await login(client, alice))["refresh_token"]
    for _ in range(2):
        assert (await client.post("/token/revoke/", data={"token": token})).status_code == 200


async def test_revoke_without_a_token_is_422_naming_it(client: Client) -> None:
    response = await client.post("/token/revoke", data={"token_type_hint": "refresh_token"})
    assert response.status_code == 422
    assert response.json()["field"] == "token"


async def test_revoke_has_the_token_limit_under_its_own_key(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    """TOKEN_RATE_LIMIT per address, but logouts never spend the logins' budget."""
    limited = await start_app(create_app(token_limited(settings, 2)))
    revokes = [
        (await limited.post("/token/revoke", data={"token": "unknown"})).status_code
        for _ in range(3)
    ]
    assert revokes == [200, 200, 429]
    assert (await login(limited, alice))["refresh_token"]  # /token's budget is untouched


ROUNDS = 30


async def test_a_refresh_racing_a_revoke_leaves_no_working_token(
    live: httpx.AsyncClient, alice: Account
) -> None:
    """Both sent at once, many times: whichever lands first, nothing of the session survives."""
    for _ in range(ROUNDS):
        token = (await login(live, alice))["refresh_token"]
        refreshed, revoked = await asyncio.gather(refresh(live, token), revoke(live, token))
        assert revoked.status_code == 200
        assert refreshed.status_code in (200, 401), refreshed.text
        if refreshed.status_code == 200:
            assert (await refresh(live, refreshed.json()["refresh_token"])).status_code == 401
        assert (await refresh(live, token)).status_code == 401


async def test_a_refresh_held_back_by_a_lock_cannot_outlive_the_revoke(
    live: httpx.AsyncClient, settings: Settings, alice: Account
) -> None:
    """The refresh waits (a second connection holds the token's row), the revoke arrives and
    waits too; then both go on. The revoke answered 200, so the refresh's new token is dead."""
    token = (await login(live, alice))["refresh_token"]
    lock = "SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE"
    async with row_locked(settings, lock, token_hash(token)) as locker:
        refreshing = asyncio.create_task(refresh(live, token))
        await locker.wait_for_waiters(1)
        revoking = asyncio.create_task(revoke(live, token))
        await locker.wait_for_waiters(2)
    refreshed, revoked = await asyncio.gather(refreshing, revoking)
    assert revoked.status_code == 200
    assert refreshed.status_code == 200  # it was first in line
    assert (await refresh(live, refreshed.json()["refresh_token"])).status_code == 401
