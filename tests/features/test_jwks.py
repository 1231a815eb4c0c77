"""Signing keys and GET /.well-known/jwks.json: RS256/ES256 deployments, rotation.

API.md, "Accounts and sessions": asymmetric tokens carry a ``kid`` naming a key of the JWKS;
under HS256 the JWKS is empty; previous public keys keep verifying. Forgeries (a ``kid`` naming
no key, an ``alg`` other than the configured one, key confusion) are refused by the
authentication of every request: tests/platform/test_authentication.py.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from shared.settings import Settings
from tests.accounts import PASSWORD, make_account
from tests.apps import StartApp
from tests.keys import asymmetric, private_pem, public_pem
from tests.processes import RunModule, run_module, start_api
from tests.sessions import login, refresh
from tests.tokens import bearer, decode

__all__ = ["run_module"]  # the fixture, imported for pytest

Client = AsyncTestClient[Litestar]


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


async def test_the_jwks_needs_no_token_and_is_cacheable(rs256: Client) -> None:
    response = await rs256.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
