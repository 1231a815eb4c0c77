"""POST /token and the bearer tokens it issues, as API.md's users section states them.

The tests that need a protected route register tests/apps.py's probe (``GET /probe/whoami``) on an
app of their own; it goes through the same auth as every route not excluded from it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from shared.database import asyncpg_dsn
from shared.services import services_of
from shared.settings import Settings
from tests.accounts import PASSWORD, Account, make_account
from tests.apps import (
    PROBE,
    PROXY,
    StartApp,
    behind_proxy,
    forwarded_for,
    token_limited,
    whoami,
    with_settings,
)
from tests.sessions import TOKEN_RESPONSE_FIELDS

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
async def guarded(settings: Settings) -> AsyncIterator[Client]:
    """A client for an app that has the protected probe route."""
    probe_app = create_app(settings)
    probe_app.register(whoami)
    async with AsyncTestClient(probe_app) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign(claims: dict[str, Any], secret: str) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def fresh_claims(sub: str, lifetime_s: int = 600) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": sub, "iat": now, "exp": now + lifetime_s}


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def eventually(check: Callable[[], Any], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return bool(await check())


# --- POST /token ---------------------------------------------------------------------------


async def test_token_returns_a_bearer_token_with_expiry_in_seconds(
    client: Client, settings: Settings, alice: Account
) -> None:
    response = await client.post(
        "/token", data={"username": alice.email, "password": alice.password}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == TOKEN_RESPONSE_FIELDS
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.access_token_expire_minutes * 60
    assert isinstance(body["access_token"], str)
    assert body["access_token"]


async def test_access_token_carries_sub_iat_and_exp(settings: Settings, alice: Account) -> None:
    claims = jwt.decode(alice.token, settings.jwt_secret, algorithms=["HS256"])
    assert claims["sub"] == str(alice.id)
    assert abs(claims["iat"] - time.time()) < 60
    expected_lifetime = settings.access_token_expire_minutes * 60
    assert abs(claims["exp"] - claims["iat"] - expected_lifetime) <= 1


async def test_login_email_is_trimmed_and_case_insensitive(client: Client, alice: Account) -> None:
    response = await client.post(
        "/token", data={"username": f"  {alice.email.upper()} ", "password": alice.password}
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


async def test_wrong_password_and_unknown_email_give_the_same_401(
    client: Client, alice: Account
) -> None:
    wrong_password = await client.post(
        "/token", data={"username": alice.email, "password": "not the password"}
    )
    unknown_email = await client.post(
        "/token", data={"username": f"nobody-{uuid.uuid4().hex}@example.com", "password": PASSWORD}
    )
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["detail"]
    assert wrong_password.headers["www-authenticate"] == "Bearer"
    assert unknown_email.headers["www-authenticate"] == "Bearer"


async def test_wrong_password_and_unknown_email_take_about_the_same_time(
    settings: Settings, start_app: StartApp
) -> None:
    # Cheap bcrypt (the suite's cost 4) would hide a skipped hash check in the noise.
    costly = await start_app(create_app(with_settings(settings, bcrypt_rounds=10)))
    account = await make_account(costly)
    wrong_password = {"username": account.email, "password": "not the password"}
    unknown_email = {"username": f"nobody-{uuid.uuid4().hex}@example.com", "password": PASSWORD}

    async def seconds(form: dict[str, str]) -> float:
        started = time.perf_counter()
        response = await costly.post("/token", data=form)
        assert response.status_code == 401
        return time.perf_counter() - started

    await seconds(wrong_password), await seconds(unknown_email)  # warm up both paths
    wrong_times, unknown_times = [], []
    for _ in range(5):
        wrong_times.append(await seconds(wrong_password))
        unknown_times.append(await seconds(unknown_email))
    ratio = statistics.median(unknown_times) / statistics.median(wrong_times)
    assert 0.5 < ratio < 2, (wrong_times, unknown_times)


@pytest.mark.parametrize(
    "password", ["x" * 73, "é" * 37, "x" * 1000], ids=["73-ascii", "74-utf8", "1000-ascii"]
)
async def test_password_longer_than_72_bytes_is_the_same_401_not_a_500(
    client: Client, alice: Account, password: str
) -> None:
    wrong_password = await client.post(
        "/token", data={"username": alice.email, "password": "not the password"}
    )
    too_long = await client.post("/token", data={"username": alice.email, "password": password})
    assert too_long.status_code == 401
    assert too_long.json() == wrong_password.json()


async def test_password_extending_the_right_one_past_72_bytes_is_401(client: Client) -> None:
    """bcrypt only sees 72 bytes: a longer guess sharing them must not pass as the password."""
    account = await make_account(client, password="p" * 72)
    response = await client.post(
        "/token", data={"username": account.email, "password": "p" * 72 + "tail"}
    )
    assert response.status_code == 401


@pytest.mark.parametrize("missing", ["username", "password"])
async def test_missing_form_field_is_422_naming_it(
    client: Client, alice: Account, missing: str
) -> None:
    form = {"username": alice.email, "password": alice.password}
    del form[missing]
    response = await client.post("/token", data=form)
    assert response.status_code == 422
    assert response.json()["field"] == missing


async def test_json_body_instead_of_form_is_a_4xx_not_a_500(client: Client, alice: Account) -> None:
    response = await client.post(
        "/token", json={"username": alice.email, "password": alice.password}
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]


async def test_token_with_trailing_slash_is_served_without_redirect(
    client: Client, alice: Account
) -> None:
    response = await client.post(
        "/token/", data={"username": alice.email, "password": alice.password}
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


async def test_the_form_swagger_ui_sends_is_accepted(client: Client, alice: Account) -> None:
    form = {
        "grant_type": "password",
        "username": alice.email,
        "password": alice.password,
        "scope": "",
        "client_id": "",
    }
    response = await client.post("/token", data=form)
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


# --- the token on a protected route --------------------------------------------------------


async def test_issued_token_authenticates_its_user(guarded: Client, alice: Account) -> None:
    response = await guarded.get(PROBE, headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {"id": alice.id}


async def test_missing_authorization_header_is_401_with_bearer_challenge(guarded: Client) -> None:
    response = await guarded.get(PROBE)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"]


async def test_token_signed_with_another_key_is_401(guarded: Client, alice: Account) -> None:
    forged = sign(fresh_claims(str(alice.id)), secrets.token_urlsafe(32))
    response = await guarded.get(PROBE, headers=bearer(forged))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_alg_none_token_is_401(guarded: Client, alice: Account) -> None:
    unsigned = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(fresh_claims(str(alice.id)))}."
    response = await guarded.get(PROBE, headers=bearer(unsigned))
    assert response.status_code == 401


async def test_expired_token_is_401(guarded: Client, settings: Settings, alice: Account) -> None:
    now = int(time.time())
    expired = sign({"sub": str(alice.id), "iat": now - 3600, "exp": now - 60}, settings.jwt_secret)
    response = await guarded.get(PROBE, headers=bearer(expired))
    assert response.status_code == 401


async def test_token_without_exp_is_401(
    guarded: Client, settings: Settings, alice: Account
) -> None:
    everlasting = sign({"sub": str(alice.id), "iat": int(time.time())}, settings.jwt_secret)
    response = await guarded.get(PROBE, headers=bearer(everlasting))
    assert response.status_code == 401


async def test_garbage_token_is_401(guarded: Client) -> None:
    response = await guarded.get(PROBE, headers=bearer("not.a.jwt"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_token_with_non_integer_sub_is_401(guarded: Client, settings: Settings) -> None:
    token = sign(fresh_claims("alice"), settings.jwt_secret)
    response = await guarded.get(PROBE, headers=bearer(token))
    assert response.status_code == 401


@pytest.mark.parametrize("sub", ["0", "-1", str(2**31), str(10**30)])
async def test_token_with_sub_outside_the_id_range_is_401_not_500(
    guarded: Client, settings: Settings, sub: str
) -> None:
    token = sign(fresh_claims(sub), settings.jwt_secret)
    response = await guarded.get(PROBE, headers=bearer(token))
    assert response.status_code == 401


async def test_token_for_a_user_that_never_existed_is_401(
    guarded: Client, settings: Settings
) -> None:
    token = sign(fresh_claims(str(2**31 - 1)), settings.jwt_secret)
    response = await guarded.get(PROBE, headers=bearer(token))
    assert response.status_code == 401


async def test_token_of_a_deleted_user_stops_working(
    guarded: Client, client: Client, settings: Settings
) -> None:
    account = await make_account(client)
    users = services_of(guarded.app).users
    assert await eventually(lambda: asyncio.sleep(0, users.listening), within=5)
    before = await guarded.get(PROBE, headers=account.headers)  # now remembered as existing
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await conn.execute("DELETE FROM users WHERE id = $1", account.id)
    finally:
        await conn.close()

    async def rejected() -> bool:
        response = await guarded.get(PROBE, headers=account.headers)
        return response.status_code == 401

    assert before.status_code == 200
    assert await eventually(rejected, within=2)


# --- the account's password budget: failed checks only (API.md, "Cross-cutting") -------------


async def start_behind_proxy(start_app: StartApp, settings: Settings, per_minute: int) -> Client:
    """A TOKEN_RATE_LIMIT of ``per_minute``, behind a trusted proxy: one address a request."""
    limited = with_settings(token_limited(settings, per_minute), trusted_proxies=PROXY)
    return await start_app(behind_proxy(create_app(limited)))


async def log_in_from(client: Client, address: str, email: str, password: str) -> Any:
    return await client.post(
        "/token",
        data={"username": email, "password": password},
        headers=forwarded_for(address),
    )


async def test_correct_logins_past_the_limit_from_several_devices_are_all_200(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    """Seen before: the fourth login of a 3/minute account was 429 whatever its password."""
    proxied = await start_behind_proxy(start_app, settings, 3)
    statuses = [
        (await log_in_from(proxied, f"198.51.100.{n}", alice.email, alice.password)).status_code
        for n in range(1, 8)
    ]
    assert statuses == [200] * 7


async def test_only_failed_checks_spend_the_accounts_budget_then_even_the_password_is_429(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    proxied = await start_behind_proxy(start_app, settings, 3)
    mixed = []
    for n in range(3):
        right = await log_in_from(proxied, f"198.51.100.{n}", alice.email, alice.password)
        wrong = await log_in_from(proxied, f"203.0.113.{n}", alice.email, f"guess {n}")
        mixed += [right.status_code, wrong.status_code]
    one_more = await log_in_from(proxied, "203.0.113.50", alice.email, "guess 50")
    right_again = await log_in_from(proxied, "198.51.100.50", alice.email, alice.password)
    assert mixed == [200, 401] * 3
    assert one_more.status_code == 429
    assert right_again.status_code == 429  # until the window ends: a guess learns nothing
    assert int(right_again.headers["retry-after"]) > 0
    assert right_again.headers["ratelimit-remaining"] == "0"  # the account's, not the address's


async def test_concurrent_wrong_guesses_through_two_processes_never_pass_the_budget(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    """A unit is taken before bcrypt runs: 40 guesses at once, from 40 addresses, through
    two apps on one Redis, and exactly the budget's 5 get a password check."""
    limited = with_settings(token_limited(settings, 5), trusted_proxies=PROXY)
    one = await start_app(behind_proxy(create_app(limited)))
    other = await start_app(behind_proxy(create_app(limited)))
    responses = await asyncio.gather(
        *(
            log_in_from((one, other)[n % 2], f"198.51.100.{n}", alice.email, f"guess {n}")
            for n in range(40)
        )
    )
    statuses = [response.status_code for response in responses]
    assert statuses.count(401) == 5
    assert statuses.count(429) == 35


# Found by tests/hardening/test_schemathesis.py:


async def test_a_username_with_a_nul_character_is_the_same_401_not_a_500(
    client: Client, alice: Account
) -> None:
    """PostgreSQL refuses NUL as a query parameter: the lookup was a 500 before."""
    wrong_password = await client.post(
        "/token", data={"username": alice.email, "password": "not the password"}
    )
    response = await client.post(
        "/token", data={"username": f"{alice.email}\x00", "password": alice.password}
    )
    assert response.status_code == 401
    assert response.json() == wrong_password.json()


async def test_openapi_says_logging_in_needs_no_token(client: Client) -> None:
    """The app-wide bearer requirement was inherited by /token in the schema."""
    operation = (await client.get("/schema/openapi.json")).json()["paths"]["/token"]["post"]
    assert operation["security"] == [{}]
    assert {"401", "413", "422", "429", "503"} <= set(operation["responses"])
