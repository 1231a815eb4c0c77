"""POST /token/revoke (RFC 7009): logs out the refresh token's whole session, always 200."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from shared.settings import Settings
from tests.accounts import Account
from tests.apps import StartApp, token_limited
from tests.sessions import login, refresh

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
