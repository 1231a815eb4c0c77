"""Helpers for the session tests: log in and refresh through the API, as a client would."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.accounts import Account

Client = AsyncTestClient[Litestar]
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
