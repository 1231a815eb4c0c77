"""The authentication of every request: a bearer access token, and nothing else, names the user.

Not POST /token (tests/features/test_token.py issues the tokens): what any protected route
does with the token it is sent. API.md, "Accounts and sessions": RFC 9068 access tokens in
``Authorization: Bearer`` only; a token that breaks any rule of the profile, is signed with a
key or ``alg`` other than the configured ones, names a ``kid`` of no key, or names a user that
no longer exists, is a 401 with ``WWW-Authenticate: Bearer``.

The tests that need a protected route of their own register tests/apps.py's probe
(``GET /probe/whoami``); it goes through the same auth as every route not excluded from it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from shared.accounts.signing_keys import SigningKeys, signing_keys
from shared.db import asyncpg_dsn
from shared.services import services_of
from shared.settings import Settings
from tests.accounts import Account, make_account
from tests.apps import PROBE, StartApp, whoami
from tests.keys import asymmetric, private_pem, public_pem
from tests.pipeline import wait_for
from tests.tokens import DROP, bearer, sign, valid_claims

Client = AsyncTestClient[Litestar]

AT_JWT = {"typ": "at+jwt"}


@pytest.fixture(scope="module")
async def guarded(settings: Settings) -> AsyncIterator[Client]:
    """A client for an app that has the protected probe route."""
    probe_app = create_app(settings)
    probe_app.register(whoami)
    async with AsyncTestClient(probe_app) as test_client:
        yield test_client


@pytest.fixture
async def rs256(settings: Settings, start_app: StartApp) -> Client:
    return await start_app(create_app(asymmetric(settings, "RS256")))


def keys_of(client: Client) -> SigningKeys:
    return services_of(client.app).signing_keys


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    """A JWT segment written by hand: PyJWT will not write a forged header (``alg: none``,
    a ``kid`` that is no string)."""
    return b64url(json.dumps(value).encode())


def forge(header: dict[str, Any], claims: dict[str, Any], mac_key: bytes) -> str:
    """An HS256-signed JWT built by hand: PyJWT refuses a PEM as an HMAC key."""
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    signature = hmac.new(mac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


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


async def test_token_signed_with_another_key_is_401(
    guarded: Client, settings: Settings, alice: Account
) -> None:
    other_key = signing_keys("HS256", secrets.token_urlsafe(32), "", "")
    forged = sign(valid_claims(settings, alice.id), other_key)
    response = await guarded.get(PROBE, headers=bearer(forged))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_alg_none_token_is_401(guarded: Client, settings: Settings, alice: Account) -> None:
    claims = valid_claims(settings, alice.id)
    unsigned = f"{b64url_json({'alg': 'none', 'typ': 'at+jwt'})}.{b64url_json(claims)}."
    response = await guarded.get(PROBE, headers=bearer(unsigned))
    assert response.status_code == 401


async def test_expired_token_is_401(guarded: Client, settings: Settings, alice: Account) -> None:
    now = int(time.time())
    claims = valid_claims(settings, alice.id, iat=now - 1800, exp=now - 60)  # a lifetime it issues
    expired = sign(claims, keys_of(guarded))
    response = await guarded.get(PROBE, headers=bearer(expired))
    assert response.status_code == 401


async def test_token_without_exp_is_401(
    guarded: Client, settings: Settings, alice: Account
) -> None:
    everlasting = sign(valid_claims(settings, alice.id, exp=DROP), keys_of(guarded))
    response = await guarded.get(PROBE, headers=bearer(everlasting))
    assert response.status_code == 401


async def test_garbage_token_is_401(guarded: Client) -> None:
    response = await guarded.get(PROBE, headers=bearer("not.a.jwt"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_token_with_non_integer_sub_is_401(guarded: Client, settings: Settings) -> None:
    token = sign(valid_claims(settings, "alice"), keys_of(guarded))
    response = await guarded.get(PROBE, headers=bearer(token))
    assert response.status_code == 401


@pytest.mark.parametrize("sub", ["0", "-1", str(2**31), str(10**30)])
async def test_token_with_sub_outside_the_id_range_is_401_not_500(
    guarded: Client, settings: Settings, sub: str
) -> None:
    token = sign(valid_claims(settings, sub), keys_of(guarded))
    response = await guarded.get(PROBE, headers=bearer(token))
    assert response.status_code == 401


async def test_token_for_a_user_that_never_existed_is_401(
    guarded: Client, settings: Settings
) -> None:
    token = sign(valid_claims(settings, 2**31 - 1), keys_of(guarded))
    response = await guarded.get(PROBE, headers=bearer(token))
    assert response.status_code == 401


async def test_token_of_a_deleted_user_stops_working(
    guarded: Client, client: Client, settings: Settings
) -> None:
    account = await make_account(client)
    users = services_of(guarded.app).users
    await wait_for(lambda: asyncio.sleep(0, users.listening), within=5)
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
    await wait_for(rejected, within=2)


async def test_a_token_in_a_cookie_alone_is_401(client: Client) -> None:
    account = await make_account(client)
    client.cookies.set("token", f"Bearer {account.token}")  # httpx deprecates per-request cookies
    try:
        cookie_only = await client.get(f"/orders/user/{account.id}")
    finally:
        client.cookies.clear()
    other_scheme = await client.get(
        f"/orders/user/{account.id}", headers={"Authorization": f"Basic {account.token}"}
    )
    header = await client.get(f"/orders/user/{account.id}", headers=account.headers)
    assert cookie_only.status_code == 401
    assert cookie_only.headers["www-authenticate"] == "Bearer"
    assert other_scheme.status_code == 401
    assert header.status_code == 200


# --- RFC 9068: forgeries signed with the real key -------------------------------------------

TEN_YEARS_S = 10 * 365 * 24 * 3600


@pytest.fixture(scope="module", params=["HS256", "ES256"])
async def guarded_by(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Client]:
    """A probe app per algorithm: the shared secret, and one asymmetric key with its kid."""
    algorithm = request.param
    probe_app = create_app(settings if algorithm == "HS256" else asymmetric(settings, algorithm))
    probe_app.register(whoami)
    async with AsyncTestClient(probe_app) as test_client:
        yield test_client


def _ahead(settings: Settings, seconds: int) -> dict[str, Any]:
    """``iat`` that far in the future, with the lifetime the API issues."""
    iat = int(time.time()) + seconds
    return {"iat": iat, "exp": iat + settings.access_token_expire_minutes * 60}


FORGERIES: dict[str, tuple[Callable[[Settings], dict[str, Any]], dict[str, Any]]] = {
    "exp-ten-years-out": (lambda s: {"exp": int(time.time()) + TEN_YEARS_S}, {}),
    "wrong-iss": (lambda s: {"iss": "someone-else"}, {}),
    "missing-iss": (lambda s: {"iss": DROP}, {}),
    "wrong-aud": (lambda s: {"aud": "another-api"}, {}),
    "missing-aud": (lambda s: {"aud": DROP}, {}),
    "missing-typ": (lambda s: {}, {"typ": DROP}),
    "typ-JWT": (lambda s: {}, {"typ": "JWT"}),
    "iat-10-minutes-ahead": (lambda s: _ahead(s, 600), {}),
    "missing-jti": (lambda s: {"jti": DROP}, {}),
    "missing-client_id": (lambda s: {"client_id": DROP}, {}),
}


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_token_signed_with_the_real_key_but_breaking_the_profile_is_401(
    guarded_by: Client, client: Client, settings: Settings, forgery: str
) -> None:
    """Each rule alone: the same token with that one thing right passes (checked first)."""
    account = await make_account(client)
    changes, header = FORGERIES[forgery]
    keys = keys_of(guarded_by)
    honest = sign(valid_claims(settings, account.id), keys)
    forged = sign(valid_claims(settings, account.id, **changes(settings)), keys, **header)
    assert (await guarded_by.get(PROBE, headers=bearer(honest))).status_code == 200
    for _ in range(2):  # refused again: a refused token is never remembered as verified
        response = await guarded_by.get(PROBE, headers=bearer(forged))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


async def test_alg_none_is_401_under_each_algorithm(
    guarded_by: Client, client: Client, settings: Settings
) -> None:
    account = await make_account(client)
    kid = keys_of(guarded_by).signing_kid
    header = {"alg": "none", "typ": "at+jwt", **({"kid": kid} if kid else {})}
    unsigned = f"{b64url_json(header)}.{b64url_json(valid_claims(settings, account.id))}."
    response = await guarded_by.get(PROBE, headers=bearer(unsigned))
    assert response.status_code == 401


async def test_iat_slightly_ahead_within_the_clock_skew_is_accepted(
    guarded_by: Client, client: Client, settings: Settings
) -> None:
    """Another API process's clock may run a little ahead (CLOCK_SKEW_S)."""
    account = await make_account(client)
    token = sign(valid_claims(settings, account.id, **_ahead(settings, 20)), keys_of(guarded_by))
    assert (await guarded_by.get(PROBE, headers=bearer(token))).status_code == 200


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "ES256"])
async def test_a_token_valid_by_every_rule_works_under_each_algorithm(
    settings: Settings, start_app: StartApp, algorithm: str
) -> None:
    app = create_app(settings if algorithm == "HS256" else asymmetric(settings, algorithm))
    app.register(whoami)
    api = await start_app(app)
    account = await make_account(api)
    issued_header = jwt.get_unverified_header(account.token)
    by_hand = sign(valid_claims(settings, account.id), keys_of(api))
    assert issued_header["typ"] == "at+jwt"
    assert issued_header["alg"] == algorithm
    for token in (account.token, by_hand):
        response = await api.get(PROBE, headers=bearer(token))
        assert response.status_code == 200
        assert response.json() == {"id": account.id}


# --- asymmetric keys: the kid, the key set, the one configured alg --------------------------


async def test_key_confusion_hs256_with_the_public_key_as_secret_is_401(
    rs256: Client, settings: Settings
) -> None:
    account = await make_account(rs256)
    kid = jwt.get_unverified_header(account.token)["kid"]
    public = public_pem(private_pem("RS256", 0)).encode()
    for header in (
        {"alg": "HS256", "typ": "at+jwt", "kid": kid},
        {"alg": "HS256", "typ": "at+jwt"},
    ):
        forged = forge(header, valid_claims(settings, account.id), public)
        response = await rs256.get("/users/me", headers=bearer(forged))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


async def test_a_kid_that_names_no_key_is_401(rs256: Client, settings: Settings) -> None:
    account = await make_account(rs256)
    private = private_pem("RS256", 0)
    for headers in ({**AT_JWT, "kid": "no-such-key"}, AT_JWT):
        token = jwt.encode(
            valid_claims(settings, account.id), private, algorithm="RS256", headers=headers
        )
        assert (await rs256.get("/users/me", headers=bearer(token))).status_code == 401
    _, claims, signature = account.token.split(".")
    for kid in (7, ["a"], {"a": 1}, None):  # PyJWT will not write these: swapped in by hand
        header = b64url_json({"alg": "RS256", "typ": "at+jwt", "kid": kid})
        token = f"{header}.{claims}.{signature}"
        assert (await rs256.get("/users/me", headers=bearer(token))).status_code == 401


async def test_a_token_signed_by_a_key_not_in_the_set_is_401(
    rs256: Client, settings: Settings
) -> None:
    account = await make_account(rs256)
    kid = jwt.get_unverified_header(account.token)["kid"]
    stranger = private_pem("RS256", 9)
    for headers in ({**AT_JWT, "kid": kid}, {**AT_JWT, "kid": "stranger"}):
        token = jwt.encode(
            valid_claims(settings, account.id), stranger, algorithm="RS256", headers=headers
        )
        assert (await rs256.get("/users/me", headers=bearer(token))).status_code == 401


async def test_another_asymmetric_alg_than_the_configured_one_is_401(
    rs256: Client, settings: Settings
) -> None:
    account = await make_account(rs256)
    kid = jwt.get_unverified_header(account.token)["kid"]
    for alg in ("PS256", "RS512"):
        token = jwt.encode(
            valid_claims(settings, account.id),
            private_pem("RS256", 0),
            algorithm=alg,
            headers={**AT_JWT, "kid": kid},
        )
        assert (await rs256.get("/users/me", headers=bearer(token))).status_code == 401


async def test_under_hs256_an_asymmetric_or_kid_token_is_401(
    client: Client, settings: Settings
) -> None:
    account = await make_account(client)
    signed = jwt.encode(
        valid_claims(settings, account.id), private_pem("RS256", 0), "RS256", headers=AT_JWT
    )
    with_kid = jwt.encode(
        valid_claims(settings, account.id),
        settings.jwt_secret,
        algorithm="HS256",
        headers={**AT_JWT, "kid": "x"},
    )
    for token in (signed, with_kid):
        assert (await client.get("/users/me", headers=bearer(token))).status_code == 401
