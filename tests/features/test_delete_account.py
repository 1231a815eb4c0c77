"""DELETE /users/me: the password again, then the account and everything of it is gone.

API.md, "Accounts and sessions": wrong password 403; then orders, refresh tokens and cached
orders are gone, every access token is refused at once on every API process, and the email
may register again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from shared.db import asyncpg_dsn
from shared.orders.cache import OrderCache
from shared.orders.view import OrderView
from shared.redis import create_redis
from shared.settings import Settings
from tests.accounts import Account, make_account
from tests.apps import PROXY, StartApp, behind_proxy, forwarded_for, token_limited, with_settings
from tests.processes import RunModule, run_module, start_api
from tests.sessions import login, refresh, row_locked

__all__ = ["run_module"]  # the fixture, imported for pytest

Client = AsyncTestClient[Litestar]
ORDER = {"items": [{"name": "Item 1", "quantity": 2, "price": "3.50"}]}


async def delete_me(client: Client | httpx.AsyncClient, account: Account, password: str) -> Any:
    return await client.request(
        "DELETE", "/users/me", headers=account.headers, json={"password": password}
    )


@pytest.fixture
async def cache(settings: Settings) -> AsyncIterator[OrderCache]:
    """The order cache, on this test's event loop (the test client runs the app on another)."""
    redis = create_redis(settings.redis_url)
    yield OrderCache(redis, settings.redis_prefix, settings.cache_ttl_seconds)
    await redis.aclose()


async def rows_of(settings: Settings, user_id: int) -> dict[str, int]:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        counts = {
            table: await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", user_id)  # noqa: S608 - fixed names
            for table, column in (("users", "id"), ("orders", "user_id"), ("sessions", "user_id"))
        }
        counts["refresh_tokens"] = await conn.fetchval(
            "SELECT count(*) FROM refresh_tokens JOIN sessions ON sessions.id = family_id"
            " WHERE sessions.user_id = $1",
            user_id,
        )
        return counts
    finally:
        await conn.close()


async def test_a_wrong_password_is_403_and_deletes_nothing(
    client: Client, settings: Settings, alice: Account
) -> None:
    await login(client, alice)
    response = await delete_me(client, alice, "not the password")
    assert response.status_code == 403
    assert response.json()["detail"]
    assert await rows_of(settings, alice.id) == {
        "users": 1,
        "orders": 0,
        "sessions": 2,
        "refresh_tokens": 2,
    }
    assert (await client.get("/users/me", headers=alice.headers)).status_code == 200


async def test_password_guesses_count_against_the_token_limit(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    """A stolen access token buys TOKEN_RATE_LIMIT guesses a minute, not RATE_LIMIT's."""
    limited = await start_app(create_app(token_limited(settings, 2)))
    guesses = [(await delete_me(limited, alice, f"guess {n}")).status_code for n in range(3)]
    assert guesses == [403, 403, 429]
    assert (await limited.get("/users/me", headers=alice.headers)).status_code == 200


async def delete_from(client: Client, address: str, account: Account, password: str) -> int:
    response = await client.request(
        "DELETE",
        "/users/me",
        headers={**account.headers, **forwarded_for(address)},
        json={"password": password},
    )
    return response.status_code


async def log_in_from(client: Client, address: str, account: Account) -> int:
    response = await client.post(
        "/token",
        data={"username": account.email, "password": account.password},
        headers=forwarded_for(address),
    )
    return response.status_code


async def test_guesses_from_many_addresses_spend_the_accounts_password_budget_shared_with_token(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    """Seen before: 14 wrong passwords from 14 addresses with one token were 14 × 403."""
    limited = with_settings(token_limited(settings, 3), trusted_proxies=PROXY)
    proxied = await start_app(behind_proxy(create_app(limited)))
    guesses = [
        await delete_from(proxied, f"198.51.100.{n}", alice, f"guess {n}") for n in range(1, 15)
    ]
    login = await log_in_from(proxied, "203.0.113.1", alice)
    assert guesses == [403] * 3 + [429] * 11
    assert login == 429  # the same budget: /token cannot go on guessing either
    assert (await proxied.get("/users/me", headers=alice.headers)).status_code == 200


async def test_failed_logins_spend_the_budget_that_deleting_checks_too(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    limited = with_settings(token_limited(settings, 2), trusted_proxies=PROXY)
    proxied = await start_app(behind_proxy(create_app(limited)))
    for n in range(2):
        await proxied.post(
            "/token",
            data={"username": alice.email, "password": f"guess {n}"},
            headers=forwarded_for(f"198.51.100.{n}"),
        )
    deleting = await delete_from(proxied, "203.0.113.1", alice, alice.password)
    assert deleting == 429
    assert (await proxied.get("/users/me", headers=alice.headers)).status_code == 200


async def test_a_correct_password_spends_nothing(settings: Settings, start_app: StartApp) -> None:
    limited = with_settings(token_limited(settings, 2), trusted_proxies=PROXY)
    proxied = await start_app(behind_proxy(create_app(limited)))
    account = await make_account(proxied)
    wrong = await delete_from(proxied, "198.51.100.1", account, "not the password")
    logins = [await log_in_from(proxied, f"198.51.100.{n}", account) for n in range(2, 6)]
    deleted = await delete_from(proxied, "198.51.100.9", account, account.password)
    assert (wrong, logins, deleted) == (403, [200] * 4, 204)


async def test_deleting_removes_orders_sessions_and_cached_orders(
    client: Client, settings: Settings, cache: OrderCache
) -> None:
    account = await make_account(client)
    session = await login(client, account)
    created = await client.post("/orders", headers=account.headers, json=ORDER)
    assert created.status_code == 201
    order_id = created.json()["id"]
    assert (await client.get(f"/orders/{order_id}", headers=account.headers)).headers[
        "x-cache"
    ] == "HIT"

    response = await delete_me(client, account, account.password)

    assert response.status_code == 204
    assert response.content == b""
    assert await rows_of(settings, account.id) == {
        "users": 0,
        "orders": 0,
        "sessions": 0,
        "refresh_tokens": 0,
    }
    assert await cache.get_raw(uuid.UUID(order_id)) is None
    assert (await refresh(client, session["refresh_token"])).status_code == 401


async def test_every_access_token_is_refused_at_once(client: Client) -> None:
    account = await make_account(client)
    other_token = (await login(client, account))["access_token"]
    assert (await client.get("/users/me", headers=account.headers)).status_code == 200

    assert (await delete_me(client, account, account.password)).status_code == 204

    for token in (account.token, other_token):
        response = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


async def test_the_email_may_register_again(client: Client) -> None:
    account = await make_account(client)
    assert (await delete_me(client, account, account.password)).status_code == 204
    again = await client.post(
        "/register", json={"email": account.email, "password": "another password"}
    )
    assert again.status_code == 201
    assert again.json()["id"] != account.id


async def test_a_deletion_is_seen_at_once_by_another_api_process(
    settings: Settings, run_module: RunModule
) -> None:
    _, first = await start_api(run_module, settings, "api-1")
    _, second = await start_api(run_module, settings, "api-2")
    async with (
        httpx.AsyncClient(base_url=first) as one,
        httpx.AsyncClient(base_url=second) as two,
    ):
        email = f"gone-{uuid.uuid4().hex[:12]}@example.com"
        created = await one.post("/register", json={"email": email, "password": "password123"})
        token = (
            await one.post("/token", data={"username": email, "password": "password123"})
        ).json()["access_token"]
        account = Account(created.json()["id"], email, "password123", token)
        # The second process has seen the user, so it vouches for them from memory.
        assert (await two.get("/users/me", headers=account.headers)).status_code == 200

        assert (await delete_me(one, account, "password123")).status_code == 204

        response = await two.get("/users/me", headers=account.headers)
        assert response.status_code == 401
        assert (await two.get("/orders/user/1", headers=account.headers)).status_code == 401


async def test_a_late_cache_write_cannot_bring_a_deleted_order_back(
    client: Client, cache: OrderCache
) -> None:
    """A job finishing after the deletion re-caches the view it read before: refused."""
    account = await make_account(client)
    created = await client.post("/orders", headers=account.headers, json=ORDER)
    view = OrderCache.decode(created.content)
    assert (await delete_me(client, account, account.password)).status_code == 204

    newer = OrderView(**{**_fields(view), "status": "PAID"})
    await cache.cache_order(newer)

    assert await cache.get_raw(view.id) is None


def _fields(view: OrderView) -> dict[str, Any]:
    return {name: getattr(view, name) for name in view.__struct_fields__}


async def test_without_a_password_is_422(client: Client, alice: Account) -> None:
    response = await client.request("DELETE", "/users/me", headers=alice.headers, json={})
    assert response.status_code == 422
    assert response.json()["field"] == "password"


async def test_a_body_that_is_not_json_is_415(client: Client, alice: Account) -> None:
    response = await client.request(
        "DELETE",
        "/users/me",
        headers={**alice.headers, "Content-Type": "text/plain"},
        content=f'{{"password": "{alice.password}"}}',
    )
    assert response.status_code == 415


async def test_without_a_token_is_401(client: Client) -> None:
    response = await client.request("DELETE", "/users/me", json={"password": "whatever1"})
    assert response.status_code == 401


async def test_a_refresh_racing_the_deletion_is_200_or_401_never_500(
    client: Client, live: httpx.AsyncClient
) -> None:
    for _ in range(30):
        account = await make_account(client)
        token = (await login(live, account))["refresh_token"]
        refreshed, deleted = await asyncio.gather(
            refresh(live, token), delete_me(live, account, account.password)
        )
        assert deleted.status_code == 204
        assert refreshed.status_code in (200, 401), refreshed.text
        if refreshed.status_code == 200:
            assert (await refresh(live, refreshed.json()["refresh_token"])).status_code == 401


@pytest.mark.parametrize("grant", ["refresh", "login"])
async def test_a_grant_waiting_on_the_deletion_is_401_not_500(
    client: Client, live: httpx.AsyncClient, settings: Settings, grant: str
) -> None:
    """The deletion has locked what it deletes and waits (a second connection holds one of the
    orders); a refresh (or a login) arrives meanwhile and must wait, then find nobody."""
    account = await make_account(client)
    token = (await login(live, account))["refresh_token"]
    created = await live.post("/orders", headers=account.headers, json=ORDER)
    lock = "SELECT 1 FROM orders WHERE id = $1 FOR UPDATE"
    async with row_locked(settings, lock, uuid.UUID(created.json()["id"])) as locker:
        deleting = asyncio.create_task(delete_me(live, account, account.password))
        await locker.wait_for_waiters(1)
        granting = asyncio.create_task(
            refresh(live, token)
            if grant == "refresh"
            else live.post("/token", data={"username": account.email, "password": account.password})
        )
        await locker.wait_for_waiters(2)
    assert (await deleting).status_code == 204
    answer = await granting
    assert answer.status_code == 401, answer.text
