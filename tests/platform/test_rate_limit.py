"""API.md's rate limits: a budget per client for the whole API and a stricter one for /token,
shared by every process through Redis; health and docs outside them; open while Redis is down.
A client is its address, an IPv6 client its /64 (RATE_LIMIT_IPV6_PREFIX).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator

import pytest
from litestar.exceptions import TooManyRequestsException

from app import create_app
from features.docs.handler import ASYNCAPI_URL, ELEMENTS_URL, SWAGGER_UI_URL
from shared.http.budgets import Budget, LimiterUnavailable, PasswordGuesses
from shared.redis import create_redis
from shared.services import services_of
from shared.settings import Settings
from tests.apps import (
    PROBE,
    PROXY,
    UNUSED_PORT,
    StartApp,
    behind_proxy,
    forwarded_for,
    unreachable,
    whoami,
    with_settings,
)
from tests.orders import Client

# A cheap request that the API-wide limit counts: it has no token, so it is a 401 before any work.
LIMITED = ("POST", "/orders")


def limited_settings(settings: Settings) -> Settings:
    """Small budgets under a Redis prefix of their own, so no other test shares them."""
    return with_settings(
        settings,
        rate_limit="3/minute",
        token_rate_limit="2/minute",
        redis_prefix=f"{settings.redis_prefix}rl-{secrets.token_hex(4)}:",
    )


async def hit_limited_route(client: Client) -> int:
    method, path = LIMITED
    response = await client.request(method, path, json={})
    return response.status_code


@pytest.fixture
async def limited(settings: Settings, start_app: StartApp) -> Client:
    limited_app = create_app(limited_settings(settings))
    limited_client = await start_app(limited_app)
    assert await services_of(limited_app).bus.wait_ready(within=10), "RabbitMQ did not connect"
    return limited_client


async def test_request_past_the_limit_is_429_with_retry_after_and_ratelimit_headers(
    limited: Client,
) -> None:
    allowed = [await hit_limited_route(limited) for _ in range(3)]
    method, path = LIMITED
    refused = await limited.request(method, path, json={})
    assert allowed == [401, 401, 401]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert refused.headers["ratelimit-limit"] == "3"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert "ratelimit-reset" in refused.headers
    assert refused.headers["content-type"].startswith("application/json")
    assert refused.json()["detail"]


async def test_responses_within_the_limit_count_down_ratelimit_remaining(
    limited: Client,
) -> None:
    method, path = LIMITED
    first = await limited.request(method, path, json={})
    second = await limited.request(method, path, json={})
    assert first.headers["ratelimit-limit"] == "3"
    assert (
        int(first.headers["ratelimit-remaining"]) == int(second.headers["ratelimit-remaining"]) + 1
    )


async def test_token_has_its_own_stricter_limit(limited: Client) -> None:
    form = {"username": f"nobody-{uuid.uuid4().hex}@example.com", "password": "whatever-pass"}
    logins = [(await limited.post("/token", data=form)).status_code for _ in range(3)]
    other_route = await hit_limited_route(limited)
    assert logins == [401, 401, 429]
    assert other_route == 401


async def test_logins_do_not_use_up_the_api_wide_budget(limited: Client) -> None:
    form = {"username": f"nobody-{uuid.uuid4().hex}@example.com", "password": "whatever-pass"}
    for _ in range(2):
        await limited.post("/token", data=form)
    others = [await hit_limited_route(limited) for _ in range(3)]
    assert others == [401, 401, 401]


async def test_requests_without_a_valid_token_count_against_the_limit(
    settings: Settings, start_app: StartApp
) -> None:
    probe_app = create_app(limited_settings(settings))
    probe_app.register(whoami)
    probe = await start_app(probe_app)
    statuses = [(await probe.get(PROBE)).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


@pytest.mark.parametrize(
    "path",
    [
        "/health",
        "/ready",
        "/schema/openapi.json",
        ASYNCAPI_URL,
        "/schema/swagger",
        "/schema/elements",
        f"{SWAGGER_UI_URL}/swagger-ui-bundle.js",
        f"{ELEMENTS_URL}/no-such-asset.js",
    ],
)
async def test_health_and_docs_are_never_rate_limited(limited: Client, path: str) -> None:
    statuses = [(await limited.get(path)).status_code for _ in range(6)]
    assert statuses in ([200] * 6, [404] * 6)  # a missing asset is 404, never 429


async def test_the_limit_is_shared_by_every_app_instance_on_the_same_redis(
    settings: Settings, start_app: StartApp
) -> None:
    shared = limited_settings(settings)
    one = await start_app(create_app(shared))
    other = await start_app(create_app(shared))
    allowed = [
        await hit_limited_route(one),
        await hit_limited_route(other),
        await hit_limited_route(one),
    ]
    assert allowed == [401, 401, 401]
    assert await hit_limited_route(other) == 429


async def test_concurrent_requests_through_two_apps_are_counted_exactly(
    settings: Settings, start_app: StartApp
) -> None:
    """The count is one atomic Redis script: racing processes lose no request."""
    shared = with_settings(limited_settings(settings), rate_limit="25/minute")
    one = await start_app(create_app(shared))
    other = await start_app(create_app(shared))
    statuses = await asyncio.gather(*(hit_limited_route((one, other)[n % 2]) for n in range(60)))
    assert statuses.count(401) == 25
    assert statuses.count(429) == 35


async def test_requests_pass_unlimited_while_redis_is_unreachable(
    settings: Settings, start_app: StartApp
) -> None:
    """The limiter fails open: a Redis outage must not take the API down with it."""
    no_redis = await start_app(create_app(unreachable(limited_settings(settings), "redis")))
    statuses = [await hit_limited_route(no_redis) for _ in range(5)]
    assert statuses == [401] * 5


# --- who a budget counts: IPv6 clients by their network ---------------------------------------


async def start_behind_proxy(start_app: StartApp, settings: Settings, **changes: object) -> Client:
    """An app with small budgets behind a trusted proxy, under a Redis prefix of its own."""
    proxied = with_settings(limited_settings(settings), trusted_proxies=PROXY, **changes)
    return await start_app(behind_proxy(create_app(proxied)))


async def revoke_from(client: Client, address: str) -> int:
    """A cheap request under a budget of its own per address (TOKEN_RATE_LIMIT)."""
    response = await client.post(
        "/token/revoke", data={"token": "unknown"}, headers=forwarded_for(address)
    )
    return response.status_code


async def test_every_address_of_one_ipv6_64_spends_one_budget(
    settings: Settings, start_app: StartApp
) -> None:
    """Seen before: 15 revokes from 15 addresses of one /64 were all 200."""
    proxied = await start_behind_proxy(start_app, settings, token_rate_limit="10/minute")
    statuses = [await revoke_from(proxied, f"2001:db8:1:2::{n:x}") for n in range(1, 16)]
    assert statuses == [200] * 10 + [429] * 5


async def test_two_ipv6_64s_have_budgets_of_their_own(
    settings: Settings, start_app: StartApp
) -> None:
    proxied = await start_behind_proxy(start_app, settings)  # 2/minute
    first = [await revoke_from(proxied, f"2001:db8:1:2::{n}") for n in range(1, 4)]
    second = [await revoke_from(proxied, f"2001:db8:1:3::{n}") for n in range(1, 4)]
    assert first == [200, 200, 429]
    assert second == [200, 200, 429]


async def test_an_ipv4_mapped_address_spends_its_ipv4_addresss_budget(
    settings: Settings, start_app: StartApp
) -> None:
    proxied = await start_behind_proxy(start_app, settings)  # 2/minute
    statuses = [
        await revoke_from(proxied, "1.2.3.4"),
        await revoke_from(proxied, "::ffff:1.2.3.4"),
        await revoke_from(proxied, "1.2.3.4"),
    ]
    other = await revoke_from(proxied, "::ffff:1.2.3.5")
    assert statuses == [200, 200, 429]
    assert other == 200


async def test_a_prefix_of_128_counts_every_ipv6_address_alone(
    settings: Settings, start_app: StartApp
) -> None:
    proxied = await start_behind_proxy(start_app, settings, rate_limit_ipv6_prefix=128)
    statuses = [await revoke_from(proxied, f"2001:db8:1:2::{n:x}") for n in range(1, 16)]
    assert statuses == [200] * 15


async def test_the_api_wide_budget_counts_an_ipv6_client_by_its_64_too(
    settings: Settings, start_app: StartApp
) -> None:
    proxied = await start_behind_proxy(start_app, settings)  # RATE_LIMIT 3/minute
    method, path = LIMITED
    statuses = [
        (
            await proxied.request(
                method, path, json={}, headers=forwarded_for(f"2001:db8:9:9::{n}")
            )
        ).status_code
        for n in range(1, 5)
    ]
    assert statuses == [401, 401, 401, 429]


# --- the budgets a handler spends (shared/http/budgets.py) fail closed ---------------------------


async def test_the_password_budget_refuses_before_any_check_while_redis_is_unreachable() -> None:
    """The middleware fails closed first on these routes; this is the budget's own guard."""
    redis = create_redis(f"redis://127.0.0.1:{UNUSED_PORT}/0")
    checked: list[str] = []

    async def verify() -> bool:
        checked.append("bcrypt ran")
        return False

    try:
        with pytest.raises(LimiterUnavailable) as refused:
            await PasswordGuesses(redis, "unused:", ("minute", 10)).check("a@example.com", verify)
    finally:
        await redis.aclose()
    assert checked == []
    assert refused.value.status_code == 503
    assert int((refused.value.headers or {})["Retry-After"]) > 0


@pytest.fixture
async def budget(settings: Settings) -> AsyncIterator[Budget]:
    """A budget of 2 a minute under a Redis prefix of its own, on this test's event loop."""
    redis = create_redis(settings.redis_url)
    yield Budget(redis, f"{settings.redis_prefix}b-{secrets.token_hex(4)}:", "probe", ("minute", 2))
    await redis.aclose()


async def test_a_unit_given_back_can_be_taken_again(budget: Budget) -> None:
    await budget.take("someone")
    second = await budget.take("someone")
    await budget.give_back("someone", second)
    await budget.take("someone")
    with pytest.raises(TooManyRequestsException):
        await budget.take("someone")


async def test_a_unit_of_an_ended_window_given_back_frees_nothing_in_the_next(
    budget: Budget,
) -> None:
    """A check that outlives its window must not refund a unit a later guess spent."""
    old = await budget.take("someone")
    await budget.redis.delete(f"{budget.key_prefix}someone")  # the window ends
    await budget.take("someone")
    await budget.take("someone")
    await budget.give_back("someone", old)
    with pytest.raises(TooManyRequestsException):
        await budget.take("someone")
