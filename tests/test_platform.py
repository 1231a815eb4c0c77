"""API.md's cross-cutting section: rate limiting, CORS, health and readiness, body size,
errors for unknown routes and methods, and the settings the service starts from.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from pathlib import Path
from typing import cast

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.types import HTTPRequestEvent, Message, Scope
from sqlalchemy.engine import make_url

from app import create_app
from features.docs.handler import ELEMENTS_URL, SWAGGER_UI_URL
from shared.settings import Settings, load_settings
from tests.apps import PROBE, StartApp, whoami, with_settings

Client = AsyncTestClient[Litestar]

ALLOWED_ORIGIN = "https://shop.example"
ONE_MIB = 1024 * 1024
UNUSED_PORT = 1

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
    assert await limited_app.state.bus.wait_ready(within=10), "RabbitMQ did not connect"
    return limited_client


# --- rate limiting -------------------------------------------------------------------------


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


# --- CORS ----------------------------------------------------------------------------------


async def test_allowed_origin_gets_allow_origin_on_a_simple_request(client: Client) -> None:
    response = await client.get("/health", headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


async def test_preflight_from_an_allowed_origin_succeeds(client: Client) -> None:
    response = await client.options(
        "/register",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type, Authorization",
        },
    )
    assert response.status_code in {200, 204}
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers
    assert "content-type" in allowed_headers


async def test_unlisted_origin_gets_no_allow_origin(client: Client) -> None:
    response = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_preflight_from_an_unlisted_origin_gets_no_allow_origin(client: Client) -> None:
    response = await client.options(
        "/register",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers
    assert response.status_code < 500


# --- health and readiness ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/health/"])
async def test_health_is_200(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/ready", "/ready/"])
async def test_ready_is_200_when_every_dependency_answers(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"postgresql": "ok", "redis": "ok", "rabbitmq": "ok"}


async def test_ready_is_200_on_every_app_instance_of_a_process(
    settings: Settings, start_app: StartApp
) -> None:
    another = create_app(settings)
    another_client = await start_app(another)
    assert await another.state.bus.wait_ready(within=10)
    response = await another_client.get("/ready")
    assert response.status_code == 200, response.text


def unreachable(settings: Settings, dependency: str) -> Settings:
    if dependency == "postgresql":
        url = make_url(settings.database_url).set(port=UNUSED_PORT)
        return with_settings(settings, database_url=url.render_as_string(hide_password=False))
    if dependency == "redis":
        return with_settings(settings, redis_url=f"redis://127.0.0.1:{UNUSED_PORT}/0")
    return with_settings(settings, rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{UNUSED_PORT}/")


@pytest.mark.parametrize("dependency", ["postgresql", "redis", "rabbitmq"])
async def test_ready_is_503_naming_the_dependency_that_is_down(
    settings: Settings, start_app: StartApp, dependency: str
) -> None:
    broken = await start_app(create_app(unreachable(settings, dependency)))
    started = time.monotonic()
    response = await broken.get("/ready")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    body = response.json()
    assert body["checks"][dependency].startswith("down")
    assert dependency in body["detail"]
    assert elapsed < 5


async def test_ready_503_names_only_what_is_down(settings: Settings, start_app: StartApp) -> None:
    broken_app = create_app(unreachable(settings, "redis"))
    broken = await start_app(broken_app)
    assert await broken_app.state.bus.wait_ready(within=10)
    response = await broken.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "postgresql": "ok",
        "redis": response.json()["checks"]["redis"],
        "rabbitmq": "ok",
    }
    assert response.json()["detail"] == "down: redis"


# --- body size -----------------------------------------------------------------------------


def padded_registration(size: int) -> bytes:
    """A valid registration whose JSON is exactly ``size`` bytes (the padding is ignored)."""
    head = f'{{"email": "big-{uuid.uuid4().hex[:12]}@example.com", "password": "pass1234", "pad": "'
    return (head + "x" * (size - len(head) - 2) + '"}').encode()


async def test_body_over_1_mib_is_413_json(client: Client) -> None:
    response = await client.post(
        "/register",
        content=padded_registration(ONE_MIB + 1),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]


async def test_streamed_body_over_1_mib_without_length_is_413_json(client: Client) -> None:
    """Chunked upload with no Content-Length, driven over ASGI by hand (the test client cannot
    stream a request body): the limit holds on the bytes that actually arrive."""
    body = padded_registration(2 * ONE_MIB)
    chunks = [body[start : start + 64 * 1024] for start in range(0, len(body), 64 * 1024)]
    sent: list[Message] = []

    async def receive() -> HTTPRequestEvent:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/register",
        "raw_path": b"/register",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver.local"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver.local", 80),
        "state": {},
    }
    # On the app's own event loop, as the test client runs every request.
    client.blocking_portal.call(client.app, cast("Scope", scope), receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    assert start["status"] == 413
    assert headers["content-type"].startswith("application/json")


async def test_form_over_1_mib_to_token_is_413_json(client: Client) -> None:
    form = b"username=a%40example.com&password=" + b"x" * ONE_MIB
    response = await client.post(
        "/token", content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")


async def test_body_of_exactly_1_mib_is_accepted(client: Client) -> None:
    response = await client.post(
        "/register",
        content=padded_registration(ONE_MIB),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


# --- unknown routes and methods ------------------------------------------------------------


async def test_unknown_route_is_404_json(client: Client) -> None:
    response = await client.get("/no-such-route")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]


async def test_wrong_method_is_405_json(client: Client) -> None:
    response = await client.get("/register")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]
    assert "POST" in response.headers["allow"]


# --- settings ------------------------------------------------------------------------------

STRONG_SECRET = "s" * 32
# The development default that code and .env.example once shipped: public, so never accepted.
PUBLISHED_DEV_SECRET = "dev-only-secret-change-me-in-production"


def test_production_refuses_to_start_without_jwt_secret(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        load_settings({"ENVIRONMENT": "production"}, env_file=tmp_path / ".env")


@pytest.mark.parametrize("environment", ["production", "test", "development"])
def test_the_once_published_development_secret_is_refused_everywhere(
    tmp_path: Path, environment: str
) -> None:
    environ = {"ENVIRONMENT": environment, "JWT_SECRET": PUBLISHED_DEV_SECRET}
    with pytest.raises(SystemExit, match="published"):
        load_settings(environ, env_file=tmp_path / ".env")


def test_settings_default_to_production_and_refuse_to_start_without_a_secret(
    tmp_path: Path,
) -> None:
    with pytest.raises(SystemExit, match="JWT_SECRET"):
        load_settings({}, env_file=tmp_path / ".env")
    assert Settings.__struct_defaults__[Settings.__struct_fields__.index("environment")] == (
        "production"
    )


def test_production_refuses_a_short_jwt_secret(tmp_path: Path) -> None:
    environ = {"ENVIRONMENT": "production", "JWT_SECRET": "s" * 31}
    with pytest.raises(SystemExit):
        load_settings(environ, env_file=tmp_path / ".env")


def test_production_accepts_a_long_jwt_secret(tmp_path: Path) -> None:
    environ = {"ENVIRONMENT": "production", "JWT_SECRET": STRONG_SECRET}
    loaded = load_settings(environ, env_file=tmp_path / ".env")
    assert loaded.jwt_secret == STRONG_SECRET


def test_development_without_a_secret_signs_with_a_random_one_per_start(tmp_path: Path) -> None:
    first = load_settings({"ENVIRONMENT": "development"}, env_file=tmp_path / ".env")
    second = load_settings({"ENVIRONMENT": "development"}, env_file=tmp_path / ".env")
    assert len(first.jwt_secret) >= 32
    assert first.jwt_secret != second.jwt_secret


def test_defaults_point_at_localhost_standard_ports(tmp_path: Path) -> None:
    loaded = load_settings({"JWT_SECRET": STRONG_SECRET}, env_file=tmp_path / ".env")
    assert make_url(loaded.database_url).drivername == "postgresql+asyncpg"
    assert make_url(loaded.database_url).port == 5432
    assert make_url(loaded.redis_url).port == 6379
    assert make_url(loaded.rabbitmq_url).port == 5672
    assert loaded.access_token_expire_minutes == 30
    assert loaded.cache_ttl_seconds == 300
    assert loaded.rate_limit == "100/minute"
    assert loaded.token_rate_limit == "10/minute"


def test_env_file_values_are_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nCACHE_TTL_SECONDS=42\nexport RATE_LIMIT='7/minute'\n"
        'CORS_ALLOW_ORIGINS="https://a.example, https://b.example"\n',
        encoding="utf-8",
    )
    loaded = load_settings({"JWT_SECRET": STRONG_SECRET}, env_file=env_file)
    assert loaded.cache_ttl_seconds == 42
    assert loaded.rate_limit == "7/minute"
    assert loaded.cors_origins == ["https://a.example", "https://b.example"]


def test_environment_overrides_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("CACHE_TTL_SECONDS=42\nACCESS_TOKEN_EXPIRE_MINUTES=5\n", encoding="utf-8")
    loaded = load_settings(
        {"CACHE_TTL_SECONDS": "7", "JWT_SECRET": STRONG_SECRET}, env_file=env_file
    )
    assert loaded.cache_ttl_seconds == 7
    assert loaded.access_token_expire_minutes == 5


def test_a_malformed_rate_limit_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        load_settings({"RATE_LIMIT": "lots"}, env_file=tmp_path / ".env")


def test_a_non_numeric_setting_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        load_settings({"CACHE_TTL_SECONDS": "five"}, env_file=tmp_path / ".env")
