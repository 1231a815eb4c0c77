"""Signing keys and GET /.well-known/jwks.json: RS256/ES256 deployments, rotation, forgeries.

API.md, "Accounts and sessions": asymmetric tokens carry a ``kid`` naming a key of the JWKS;
under HS256 the JWKS is empty; previous public keys keep verifying; a ``kid`` naming no key,
or an ``alg`` other than the configured one, is a 401.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx
import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from shared.settings import Settings
from tests.accounts import PASSWORD, make_account
from tests.apps import StartApp, with_settings
from tests.keys import private_pem, public_pem
from tests.processes import RunModule, run_module, start_api
from tests.sessions import login, refresh
from tests.tokens import decode, valid_claims

__all__ = ["run_module"]  # the fixture, imported for pytest

Client = AsyncTestClient[Litestar]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], mac_key: bytes) -> str:
    """An HS256-signed JWT built by hand: PyJWT refuses a PEM as an HMAC key."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(mac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def fresh_claims(settings: Settings, user_id: int) -> dict[str, Any]:
    """Valid by every rule of the profile: what a forgery below breaks is its key or alg."""
    return valid_claims(settings, user_id)


AT_JWT = {"typ": "at+jwt"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def asymmetric(settings: Settings, algorithm: str, key: int = 0, **changes: Any) -> Settings:
    return with_settings(
        settings, jwt_algorithm=algorithm, jwt_private_key=private_pem(algorithm, key), **changes
    )


async def test_under_hs256_the_jwks_is_empty(client: Client) -> None:
    for path in ("/.well-known/jwks.json", "/.well-known/jwks.json/"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == {"keys": []}


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_a_client_verifies_tokens_from_the_jwks_alone(
    settings: Settings, start_app: StartApp, algorithm: str
) -> None:
    app = await start_app(create_app(asymmetric(settings, algorithm)))
    account = await make_account(app)
    jwks = (await app.get("/.well-known/jwks.json")).json()

    header = jwt.get_unverified_header(account.token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = decode(account.token, settings, key, algorithm)

    assert header["alg"] == algorithm
    assert claims["sub"] == str(account.id)
    assert [k["kid"] for k in jwks["keys"]] == [header["kid"]]
    assert {k["use"] for k in jwks["keys"]} == {"sig"}
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwks["keys"][0])  # no private part
    assert (await app.get("/users/me", headers=account.headers)).status_code == 200


async def test_an_rs256_deployment_is_verified_with_pyjwkclient(
    settings: Settings, run_module: RunModule
) -> None:
    """The real process, its key from the environment; the verifier knows only the URL."""
    _, base = await start_api(run_module, asymmetric(settings, "RS256"))
    async with httpx.AsyncClient(base_url=base) as api:
        email = f"jwks-{uuid.uuid4().hex[:12]}@example.com"
        await api.post("/register", json={"email": email, "password": PASSWORD})
        body = (await api.post("/token", data={"username": email, "password": PASSWORD})).json()
    verifier = jwt.PyJWKClient(f"{base}/.well-known/jwks.json")
    key = await asyncio.to_thread(verifier.get_signing_key_from_jwt, body["access_token"])
    claims = decode(body["access_token"], settings, key, "RS256")
    assert claims["sub"].isdigit()


async def test_a_key_rotation_keeps_old_tokens_working(
    settings: Settings, start_app: StartApp
) -> None:
    before = await start_app(create_app(asymmetric(settings, "RS256", key=0)))
    account = await make_account(before)
    old_token = account.token
    rotated = asymmetric(
        settings, "RS256", key=1, jwt_previous_public_keys=public_pem(private_pem("RS256", 0))
    )
    after = await start_app(create_app(rotated))

    assert (await after.get("/users/me", headers=bearer(old_token))).status_code == 200
    new_token = (await login(after, account))["access_token"]
    kids = [key["kid"] for key in (await after.get("/.well-known/jwks.json")).json()["keys"]]
    assert jwt.get_unverified_header(new_token)["kid"] == kids[0]
    assert jwt.get_unverified_header(old_token)["kid"] == kids[1]
    # Once the previous key is dropped from the settings, its tokens stop working.
    dropped = await start_app(create_app(asymmetric(settings, "RS256", key=1)))
    assert (await dropped.get("/users/me", headers=bearer(old_token))).status_code == 401
    assert (await dropped.get("/users/me", headers=bearer(new_token))).status_code == 200


async def test_refresh_works_under_rs256(settings: Settings, start_app: StartApp) -> None:
    app = await start_app(create_app(asymmetric(settings, "RS256")))
    account = await make_account(app)
    refreshed = await refresh(app, (await login(app, account))["refresh_token"])
    assert refreshed.status_code == 200
    assert (await app.get("/users/me", headers=bearer(refreshed.json()["access_token"]))).is_success


@pytest.fixture
async def rs256(settings: Settings, start_app: StartApp) -> Client:
    return await start_app(create_app(asymmetric(settings, "RS256")))


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
        forged = forge(header, fresh_claims(settings, account.id), public)
        response = await rs256.get("/users/me", headers=bearer(forged))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


async def test_a_kid_that_names_no_key_is_401(rs256: Client, settings: Settings) -> None:
    account = await make_account(rs256)
    private = private_pem("RS256", 0)
    for headers in ({**AT_JWT, "kid": "no-such-key"}, AT_JWT):
        token = jwt.encode(
            fresh_claims(settings, account.id), private, algorithm="RS256", headers=headers
        )
        assert (await rs256.get("/users/me", headers=bearer(token))).status_code == 401
    _, claims, signature = account.token.split(".")
    for kid in (7, ["a"], {"a": 1}, None):  # PyJWT will not write these: swapped in by hand
        header = b64url(json.dumps({"alg": "RS256", "typ": "at+jwt", "kid": kid}).encode())
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
            fresh_claims(settings, account.id), stranger, algorithm="RS256", headers=headers
        )
        assert (await rs256.get("/users/me", headers=bearer(token))).status_code == 401


async def test_another_asymmetric_alg_than_the_configured_one_is_401(
    rs256: Client, settings: Settings
) -> None:
    account = await make_account(rs256)
    kid = jwt.get_unverified_header(account.token)["kid"]
    for alg in ("PS256", "RS512"):
        token = jwt.encode(
            fresh_claims(settings, account.id),
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
        fresh_claims(settings, account.id), private_pem("RS256", 0), "RS256", headers=AT_JWT
    )
    with_kid = jwt.encode(
        fresh_claims(settings, account.id),
        settings.jwt_secret,
        algorithm="HS256",
        headers={**AT_JWT, "kid": "x"},
    )
    for token in (signed, with_kid):
        assert (await client.get("/users/me", headers=bearer(token))).status_code == 401


async def test_the_jwks_needs_no_token_and_is_cacheable(rs256: Client) -> None:
    response = await rs256.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
