"""GET /users/me: the bearer's own account."""

from __future__ import annotations

from datetime import datetime

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.accounts import Account

Client = AsyncTestClient[Litestar]


async def test_me_shows_the_callers_account(client: Client, alice: Account) -> None:
    response = await client.get("/users/me", headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "email", "created_at"}
    assert (body["id"], body["email"]) == (alice.id, alice.email)
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None


async def test_me_is_each_callers_own(client: Client, alice: Account, bob: Account) -> None:
    response = await client.get("/users/me/", headers=bob.headers)
    assert response.status_code == 200
    assert response.json()["id"] == bob.id != alice.id


async def test_me_without_a_token_is_401(client: Client) -> None:
    response = await client.get("/users/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
