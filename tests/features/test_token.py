"""POST /token and the bearer tokens it issues, as API.md's users section states them.

What every protected route does with such a token (forgeries, expiry, deleted users, the kid)
is tests/platform/test_authentication.py's.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from shared.accounts.access_tokens import FIRST_PARTY_CLIENT_ID
from shared.settings import Settings
from tests.accounts import PASSWORD, Account, make_account
from tests.apps import (
    PROXY,
    StartApp,
    behind_proxy,
    forwarded_for,
    token_limited,
    with_settings,
)
from tests.sessions import TOKEN_RESPONSE_FIELDS, login
from tests.tokens import bearer, decode

Client = AsyncTestClient[Litestar]


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


async def test_access_token_follows_the_rfc_9068_profile(
    client: Client, settings: Settings, alice: Account
) -> None:
    header = jwt.get_unverified_header(alice.token)
    claims = decode(alice.token, settings, settings.jwt_secret, "HS256")
    assert header == {"alg": "HS256", "typ": "at+jwt"}
    assert set(claims) == {"iss", "aud", "sub", "client_id", "iat", "exp", "jti"}  # no extras
    assert claims["iss"] == settings.jwt_issuer == "order-service"
    assert claims["aud"] == settings.jwt_audience == "order-api"
    assert claims["sub"] == str(alice.id)
    assert claims["client_id"] == FIRST_PARTY_CLIENT_ID
    assert abs(claims["iat"] - time.time()) < 60
    assert claims["exp"] - claims["iat"] == settings.access_token_expire_minutes * 60
    again = (await login(client, alice))["access_token"]
    assert decode(again, settings, settings.jwt_secret, "HS256")["jti"] != claims["jti"]


async def test_login_email_is_trimmed_and_case_insensitive(client: Client, alice: Account) -> None:
    response = await client.post(
        "/token", data={"username": f"  {alice.email.upper()} ", "password": alice.password}
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


@pytest.mark.parametrize(
    "spell",
    [
        lambda email: email.replace("u", "\uff55", 1),  # a full-width u in "user-"
        lambda email: email.replace("@", "\uff20"),  # a full-width @
        lambda email: email.upper().replace("E", "\uff25"),  # full-width capitals
    ],
    ids=["full-width-letter", "full-width-at", "full-width-capitals"],
)
async def test_a_look_alike_of_the_email_logs_in_to_the_same_account(
    client: Client, alice: Account, spell: Callable[[str], str]
) -> None:
    response = await client.post(
        "/token", data={"username": spell(alice.email), "password": alice.password}
    )
    assert response.status_code == 200
    me = await client.get("/users/me", headers=bearer(response.json()["access_token"]))
    assert me.json()["id"] == alice.id


async def test_either_spelling_of_an_internationalised_domain_logs_in(client: Client) -> None:
    local = f"idn-{uuid.uuid4().hex[:12]}"
    registered = await client.post(
        "/register", json={"email": f"{local}@b\u00fccher.example", "password": PASSWORD}
    )
    assert registered.status_code == 201
    for username in (f"{local}@B\u00dcCHER.example", f"{local}@xn--bcher-kva.example"):
        response = await client.post("/token", data={"username": username, "password": PASSWORD})
        assert response.status_code == 200, username


async def test_an_address_that_grows_when_lower_cased_is_the_same_401_not_a_500(
    client: Client,
) -> None:
    username = "\u0130" * 300 + "@x.io"
    response = await client.post("/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 401


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
    assert operation["security"] == []
    assert {"401", "413", "422", "429", "503"} <= set(operation["responses"])
