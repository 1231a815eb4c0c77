"""Headers every answer carries (API.md, "Cross-cutting"; shared/http/security_headers.py).

nosniff on every answer whatever produced it (a handler, an error handler, Litestar's own 404
and 405, the rate limiter, the body limit, the docs); ``no-store`` (with ``Pragma: no-cache``)
unless the route has a public cache policy of its own; HSTS only when a trusted proxy reports
HTTPS, checked against the real process behind a real socket.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from features.docs.handler import SWAGGER_UI_URL
from shared.settings import Settings
from tests.accounts import Account, make_account
from tests.apps import StartApp, metrics_headers, with_settings
from tests.orders import create_order, evict
from tests.processes import RunModule, run_module, start_api
from tests.sessions import login

__all__ = ["run_module"]  # the fixture, imported for pytest

Client = AsyncTestClient[Litestar]
ONE_MIB = 1024 * 1024
HSTS = "strict-transport-security"


def assert_not_stored(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    assert HSTS not in response.headers  # plain HTTP, no proxy


def directives(response: httpx.Response) -> set[str]:
    return {part.strip() for part in response.headers["cache-control"].split(",")}


def hsts_max_age(response: httpx.Response) -> int:
    directives = [part.strip() for part in response.headers[HSTS].split(";")]
    assert "includeSubDomains" in directives
    return int(next(d for d in directives if d.startswith("max-age=")).removeprefix("max-age="))


async def _answers(client: Client, account: Account, settings: Settings) -> dict[str, Any]:
    order = await create_order(client, account)
    auth = account.headers
    answers = {
        "users-me-200": await client.get("/users/me", headers=auth),
        "order-hit-200": await client.get(f"/orders/{order['id']}", headers=auth),
        "order-list-200": await client.get(f"/orders/user/{account.id}", headers=auth),
        "order-create-201": await client.post(
            "/orders", json={"items": [{"name": "x", "quantity": 1, "price": "1"}]}, headers=auth
        ),
        "patch-409": await client.patch(
            f"/orders/{order['id']}", json={"status": "SHIPPED"}, headers=auth
        ),
        "other-users-403": await client.get(f"/orders/user/{account.id + 1}", headers=auth),
        "no-token-401": await client.get("/users/me"),
        "register-422": await client.post("/register", json={"email": "nope"}),
        "unknown-path-404": await client.get(f"/no-such-{uuid.uuid4().hex}"),
        "unknown-order-404": await client.get(f"/orders/{uuid.uuid4()}", headers=auth),
        "method-405": await client.put("/token"),
        "body-413": await client.post(
            "/register", content=b"{" + b" " * (2 * ONE_MIB) + b"}", headers=json_type()
        ),
        "health-200": await client.get("/health"),
        "ready-200": await client.get("/ready"),
        "metrics-200": await client.get("/metrics", headers=metrics_headers(settings)),
        "swagger-200": await client.get("/schema/swagger"),
        "openapi-200": await client.get("/schema/openapi.json"),
        "missing-asset-404": await client.get(f"{SWAGGER_UI_URL}/index.html"),
        "cors-preflight-204": await client.options(
            "/orders",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
            },
        ),
    }
    await evict(settings, order["id"])
    answers["order-miss-200"] = await client.get(f"/orders/{order['id']}", headers=auth)
    return answers


def json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}


async def test_every_answer_is_nosniff_and_not_stored(
    client: Client, settings: Settings, alice: Account
) -> None:
    answers = await _answers(client, alice, settings)
    for name, response in answers.items():
        expected = int(name.rsplit("-", 1)[1])
        assert response.status_code == expected, (name, response.status_code)
        try:
            assert_not_stored(response)
        except (AssertionError, KeyError) as exc:
            raise AssertionError(f"{name}: {dict(response.headers)}") from exc
    assert answers["order-hit-200"].headers["x-cache"] == "HIT"
    assert answers["order-miss-200"].headers["x-cache"] == "MISS"


async def test_token_answers_are_no_store_and_pragma_no_cache(
    client: Client, alice: Account
) -> None:
    """RFC 6749 §5.1, for both grants, the revocation and the refusals."""
    session = await login(client, alice)
    answers = [
        await client.post("/token", data={"username": alice.email, "password": alice.password}),
        await client.post("/token", data={"username": alice.email, "password": "wrong-pass"}),
        await client.post("/token", data={"username": alice.email}),
        await client.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": session["refresh_token"]},
        ),
        await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": "x"}),
        await client.post("/token/revoke", data={"token": session["refresh_token"]}),
    ]
    assert [r.status_code for r in answers] == [200, 401, 422, 200, 401, 200]
    for response in answers:
        assert_not_stored(response)


async def test_public_keys_and_versioned_assets_keep_their_public_cache_policy(
    client: Client,
) -> None:
    jwks = await client.get("/.well-known/jwks.json")
    asset = await client.get(f"{SWAGGER_UI_URL}/swagger-ui.css")
    assert directives(jwks) == {"public", "max-age=300"}
    assert directives(asset) == {"public", "max-age=31536000", "immutable"}
    for response in (jwks, asset):
        assert response.status_code == 200
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "pragma" not in response.headers


async def test_a_rate_limited_answer_is_nosniff_and_not_stored(
    settings: Settings, start_app: StartApp
) -> None:
    limited = with_settings(
        settings, rate_limit="1/minute", redis_prefix=f"{settings.redis_prefix}sh-{uuid.uuid4()}:"
    )
    api = await start_app(create_app(limited))
    first, second = await api.get("/users/me"), await api.get("/users/me")
    assert (first.status_code, second.status_code) == (401, 429)
    assert_not_stored(second)


async def test_hsts_is_sent_only_when_a_trusted_proxy_reports_https(
    settings: Settings, run_module: RunModule
) -> None:
    """The real process behind 127.0.0.1, trusted: its every answer over HTTPS has HSTS, the
    404 and 405 Litestar gives before any middleware included; plain HTTP has none."""
    _, base = await start_api(run_module, with_settings(settings, trusted_proxies="127.0.0.1"))
    over_https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    async with httpx.AsyncClient(base_url=base) as proxy:
        https_answers = [
            await proxy.get("/health", headers=over_https),
            await proxy.get("/users/me", headers=over_https),
            await proxy.get(f"/no-such-{secrets.token_hex(4)}", headers=over_https),
            await proxy.put("/token", headers=over_https),
            await proxy.get("/schema/swagger", headers=over_https),
        ]
        http_answers = [
            await proxy.get("/health", headers={"X-Forwarded-Proto": "http"}),
            await proxy.get("/health"),
            await proxy.get("/nope", headers={"X-Forwarded-Proto": "http"}),
        ]
    assert [r.status_code for r in https_answers] == [200, 401, 404, 405, 200]
    for response in https_answers:
        assert hsts_max_age(response) >= 365 * 24 * 3600
        assert response.headers["x-content-type-options"] == "nosniff"
    for response in http_answers:
        assert HSTS not in response.headers


async def test_a_client_claiming_https_itself_gets_no_hsts(
    settings: Settings, run_module: RunModule, client: Client
) -> None:
    """The peer is not a trusted proxy: its X-Forwarded-Proto is not believed."""
    elsewhere = with_settings(settings, trusted_proxies="192.0.2.1")
    _, base = await start_api(run_module, elsewhere, log="untrusted-peer")
    claims_https = {"X-Forwarded-Proto": "https"}
    async with httpx.AsyncClient(base_url=base) as direct:
        answers = [
            await direct.get("/health", headers=claims_https),
            await direct.get("/nope", headers=claims_https),
            await direct.put("/token", headers=claims_https),
        ]
    answers.append(await client.get("/health", headers=claims_https))  # no proxies at all
    for response in answers:
        assert HSTS not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"


@pytest.fixture
async def alice(client: Client) -> Account:
    return await make_account(client)
