"""POST /token with grant_type=refresh_token: rotation, replay detection, one winner of a race.

API.md, "Accounts and sessions". Every refusal is the wrong password's 401, same body.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from shared.db import asyncpg_dsn
from shared.redis import create_redis
from shared.settings import Settings
from tests.accounts import Account
from tests.apps import StartApp, token_limited, with_settings
from tests.sessions import (
    TOKEN_RESPONSE_FIELDS,
    login,
    refresh,
    row_locked,
    token_hash,
    wrong_password_body,
)

Client = AsyncTestClient[Litestar]


async def test_the_password_grant_also_returns_a_refresh_token(
    client: Client, settings: Settings, alice: Account
) -> None:
    body = await login(client, alice)
    assert set(body) == TOKEN_RESPONSE_FIELDS
    assert body["refresh_expires_in"] == settings.refresh_token_expire_days * 86400
    assert len(body["refresh_token"]) >= 43  # 256 random bits in base64url
    assert body["refresh_token"].count(".") != 2  # opaque, not a JWT


async def test_a_refresh_returns_new_tokens_that_work(client: Client, alice: Account) -> None:
    first = await login(client, alice)
    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["token_type"] == "bearer"
    assert second["refresh_token"] != first["refresh_token"]
    me = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {second['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["id"] == alice.id
    assert (await refresh(client, second["refresh_token"])).status_code == 200


async def test_the_refresh_grant_works_with_a_trailing_slash(
    client: Client, alice: Account
) -> None:
    first = await login(client, alice)
    response = await client.post(
        "/token/", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert response.status_code == 200


async def test_a_replay_from_a_second_client_revokes_the_whole_session(
    settings: Settings, client: Client, start_app: StartApp, alice: Account
) -> None:
    victim = client
    thief = await start_app(create_app(settings))  # another client, another app instance
    stolen = (await login(victim, alice))["refresh_token"]
    rotated = await refresh(victim, stolen)  # the victim refreshes first
    assert rotated.status_code == 200
    victims_new = rotated.json()["refresh_token"]

    replay = await refresh(thief, stolen)

    assert replay.status_code == 401
    assert replay.json() == await wrong_password_body(victim, alice)
    assert replay.headers["www-authenticate"] == "Bearer"
    # The victim's newer token belongs to the same login: revoked too, both must log in.
    assert (await refresh(victim, victims_new)).status_code == 401
    assert (await refresh(thief, stolen)).status_code == 401


async def test_a_thief_refreshing_first_loses_the_session_when_the_victim_refreshes(
    client: Client, alice: Account
) -> None:
    stolen = (await login(client, alice))["refresh_token"]
    thiefs = await refresh(client, stolen)
    assert thiefs.status_code == 200
    assert (await refresh(client, stolen)).status_code == 401  # the victim's turn: a replay
    assert (await refresh(client, thiefs.json()["refresh_token"])).status_code == 401


async def test_a_replay_leaves_the_users_other_sessions_alone(
    client: Client, alice: Account
) -> None:
    laptop = (await login(client, alice))["refresh_token"]
    phone = (await login(client, alice))["refresh_token"]
    assert (await refresh(client, laptop)).status_code == 200
    assert (await refresh(client, laptop)).status_code == 401
    assert (await refresh(client, phone)).status_code == 200


async def test_of_concurrent_refreshes_with_one_token_exactly_one_wins(
    live: httpx.AsyncClient, alice: Account
) -> None:
    """Sent together to a real server. The losers are replays: the session ends, and the
    winner's new token with it."""
    for _ in range(10):  # a race can go either way; each round must have one winner
        token = (await login(live, alice))["refresh_token"]
        answers = await asyncio.gather(*(refresh(live, token) for _ in range(5)))
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 401, 401, 401, 401], statuses
        (won,) = (answer for answer in answers if answer.status_code == 200)
        assert (await refresh(live, won.json()["refresh_token"])).status_code == 401


@pytest.mark.parametrize(
    "token",
    ["", "x", "not a token at all", "A" * 43, "é" * 43, "a" * 512],
    ids=["empty", "short", "spaces", "unknown", "non-ascii", "long"],
)
async def test_a_malformed_or_unknown_refresh_token_is_the_wrong_password_401(
    client: Client, alice: Account, token: str
) -> None:
    response = await refresh(client, token)
    assert response.status_code == 401
    assert response.json() == await wrong_password_body(client, alice)


async def test_an_access_token_is_not_a_refresh_token(client: Client, alice: Account) -> None:
    response = await refresh(client, alice.token)
    assert response.status_code == 401
    assert response.json() == await wrong_password_body(client, alice)


async def test_a_refresh_token_is_not_a_bearer_token(client: Client, alice: Account) -> None:
    refresh_token = (await login(client, alice))["refresh_token"]
    response = await client.get("/users/me", headers={"Authorization": f"Bearer {refresh_token}"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_expired_refresh_token_is_401(
    client: Client, settings: Settings, alice: Account
) -> None:
    token = (await login(client, alice))["refresh_token"]
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await conn.execute(
            "UPDATE refresh_tokens SET expires_at = now() - $2::interval WHERE token_hash = $1",
            hashlib.sha256(token.encode()).digest(),
            timedelta(seconds=1),
        )
    finally:
        await conn.close()
    response = await refresh(client, token)
    assert response.status_code == 401
    assert response.json() == await wrong_password_body(client, alice)


async def test_only_a_hash_of_the_refresh_token_is_stored(
    client: Client, settings: Settings, alice: Account
) -> None:
    body = await login(client, alice)
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows = await conn.fetch(
            "SELECT token_hash, t.expires_at - created_at AS lifetime FROM refresh_tokens t"
            " JOIN sessions s ON s.id = t.family_id WHERE s.user_id = $1",
            alice.id,
        )
    finally:
        await conn.close()
    hashes = {row["token_hash"] for row in rows}
    assert hashlib.sha256(body["refresh_token"].encode()).digest() in hashes
    assert body["refresh_token"].encode() not in hashes
    lifetime = max(row["lifetime"] for row in rows)
    assert abs(lifetime - timedelta(days=settings.refresh_token_expire_days)) < timedelta(minutes=1)


async def test_refresh_token_expire_days_sets_the_lifetime(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    short = await start_app(create_app(with_settings(settings, refresh_token_expire_days=2)))
    assert (await login(short, alice))["refresh_expires_in"] == 2 * 86400


@pytest.mark.parametrize("grant_type", ["client_credentials", "authorization_code", "implicit"])
async def test_an_unsupported_grant_type_is_a_4xx_naming_it(
    client: Client, grant_type: str
) -> None:
    response = await client.post("/token", data={"grant_type": grant_type, "code": "x"})
    assert 400 <= response.status_code < 500
    assert grant_type in response.json()["detail"]


async def test_the_refresh_grant_without_a_refresh_token_is_422_naming_it(client: Client) -> None:
    response = await client.post("/token", data={"grant_type": "refresh_token"})
    assert response.status_code == 422
    assert response.json()["field"] == "refresh_token"


async def refresh_chain(client: Client, refresh_token: str, times: int) -> tuple[list[int], str]:
    """Refresh ``times`` over, each with the last answer's token: the statuses, the last token."""
    statuses = []
    for _ in range(times):
        response = await refresh(client, refresh_token)
        statuses.append(response.status_code)
        if response.status_code == 200:
            refresh_token = response.json()["refresh_token"]
    return statuses, refresh_token


async def test_a_session_has_its_own_refresh_budget(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    """TOKEN_RATE_LIMIT refreshes per session; another session of the address goes on."""
    limited = await start_app(create_app(token_limited(settings, 3)))
    one = (await login(limited, alice))["refresh_token"]
    other = (await login(limited, alice))["refresh_token"]
    statuses, last = await refresh_chain(limited, one, 3)
    refused = await refresh(limited, last)
    others, _ = await refresh_chain(limited, other, 3)
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert refused.headers["ratelimit-limit"] == "3"  # the session's budget, not RATE_LIMIT's
    assert refused.headers["ratelimit-remaining"] == "0"
    assert others == [200, 200, 200]


async def test_a_refresh_over_its_budget_leaves_the_token_usable_after_the_window(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    """The 429 rolls the rotation back: the token was not used, so it is no replay later."""
    limited_settings = token_limited(settings, 2)
    limited = await start_app(create_app(limited_settings))
    _, last = await refresh_chain(limited, (await login(limited, alice))["refresh_token"], 2)
    refused = await refresh(limited, last)
    redis = create_redis(settings.redis_url)
    try:  # the window ends
        budgets = f"{limited_settings.redis_prefix}ratelimit:refresh_session::*"
        async for key in redis.scan_iter(match=budgets):
            await redis.delete(key)
    finally:
        await redis.aclose()
    later = await refresh(limited, last)
    assert refused.status_code == 429
    assert later.status_code == 200, later.text


async def test_refreshes_count_under_the_api_wide_limit(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    general = with_settings(token_limited(settings, 100), rate_limit="3/minute")
    limited = await start_app(create_app(general))
    statuses, last = await refresh_chain(limited, (await login(limited, alice))["refresh_token"], 3)
    refused = await refresh(limited, last)
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.headers["ratelimit-limit"] == "3"


async def test_refreshes_do_not_lock_the_other_users_of_the_address_out_of_token(
    settings: Settings, start_app: StartApp, alice: Account, bob: Account
) -> None:
    """Seen before: ten refreshes counted as ten more accounts of the address, and another
    user's correct password then got 429. A refresh guesses no password."""
    limited = await start_app(create_app(token_limited(settings, 10)))
    statuses, _ = await refresh_chain(limited, (await login(limited, alice))["refresh_token"], 10)
    bobs_login = await limited.post(
        "/token", data={"username": bob.email, "password": bob.password}
    )
    assert statuses == [200] * 10
    assert bobs_login.status_code == 200, bobs_login.text


async def test_openapi_documents_the_grants_and_the_session_endpoints(client: Client) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    schemas, paths = document["components"]["schemas"], document["paths"]
    form = schemas["TokenForm"]["properties"]
    assert set(form["grant_type"]["enum"]) >= {"password", "refresh_token"}
    assert "refresh_token" in form
    assert {"refresh_token", "refresh_expires_in"} <= set(schemas["TokenResponse"]["required"])
    flow = document["components"]["securitySchemes"]["BearerToken"]["flows"]["password"]
    assert flow["tokenUrl"] == flow["refreshUrl"] == "/token"
    for path, method in (("/token/revoke", "post"), ("/.well-known/jwks.json", "get")):
        assert paths[path][method]["security"] == []  # no token needed
    assert {"get", "delete"} <= set(paths["/users/me"])
    assert "security" not in paths["/users/me"]["delete"]  # the app-wide bearer requirement


async def test_a_thief_refreshing_while_the_victim_replays_keeps_nothing(
    live: httpx.AsyncClient, alice: Account
) -> None:
    """The victim replays the old token while the thief refreshes the rotated one, at once,
    many times: the replay is refused and no token of the session works afterwards."""
    for _ in range(30):
        old = (await login(live, alice))["refresh_token"]
        rotated = (await refresh(live, old)).json()["refresh_token"]
        thiefs, replay = await asyncio.gather(refresh(live, rotated), refresh(live, old))
        assert replay.status_code == 401
        assert thiefs.status_code in (200, 401), thiefs.text
        if thiefs.status_code == 200:
            assert (await refresh(live, thiefs.json()["refresh_token"])).status_code == 401
        assert (await refresh(live, rotated)).status_code == 401


async def test_a_thiefs_refresh_held_back_by_a_lock_cannot_outlive_the_replay(
    live: httpx.AsyncClient, settings: Settings, alice: Account
) -> None:
    """The thief's refresh waits on a row lock held elsewhere; the victim's replay arrives and
    waits too. The replay revokes the session: the thief's new token must die with it."""
    old = (await login(live, alice))["refresh_token"]
    rotated = (await refresh(live, old)).json()["refresh_token"]
    lock = "SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE"
    async with row_locked(settings, lock, token_hash(rotated)) as locker:
        thiefs = asyncio.create_task(refresh(live, rotated))
        await locker.wait_for_waiters(1)
        replay = asyncio.create_task(refresh(live, old))
        await locker.wait_for_waiters(2)
    assert (await replay).status_code == 401
    assert (await thiefs).status_code == 200  # it was first in line
    assert (await refresh(live, (await thiefs).json()["refresh_token"])).status_code == 401


async def move_session(settings: Settings, refresh_token: str, ends_in: timedelta) -> None:
    """Move the token's session back in time so that it ends ``ends_in`` from now (negative:
    it ended that long ago); the token's own expiry is left alone."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        moved = await conn.execute(
            "UPDATE sessions SET expires_at = now() + $2::interval,"
            " started_at = now() + $2::interval - make_interval(days => $3)"
            " WHERE id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)",
            token_hash(refresh_token),
            ends_in,
            settings.session_max_days,
        )
        assert moved == "UPDATE 1"
    finally:
        await conn.close()


async def lifetimes(settings: Settings, refresh_token: str) -> tuple[timedelta, timedelta]:
    """How long the token and its session have left, by the database's clock."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        row = await conn.fetchrow(
            "SELECT t.expires_at - now() AS token, s.expires_at - now() AS session"
            " FROM refresh_tokens t JOIN sessions s ON s.id = t.family_id"
            " WHERE t.token_hash = $1",
            token_hash(refresh_token),
        )
    finally:
        await conn.close()
    assert row is not None
    return row["token"], row["session"]


async def test_a_session_older_than_session_max_days_refuses_refresh(
    client: Client, settings: Settings, alice: Account
) -> None:
    token = (await login(client, alice))["refresh_token"]
    await move_session(settings, token, ends_in=-timedelta(seconds=1))
    response = await refresh(client, token)
    assert response.status_code == 401
    assert response.json() == await wrong_password_body(client, alice)


async def test_a_refresh_never_extends_the_session(
    client: Client, settings: Settings, alice: Account
) -> None:
    """A session that ends in two hours: the new token lives two hours, not fifteen days."""
    token = (await login(client, alice))["refresh_token"]
    await move_session(settings, token, ends_in=timedelta(hours=2))
    response = await refresh(client, token)
    assert response.status_code == 200
    body = response.json()
    assert 7200 - 60 < body["refresh_expires_in"] <= 7200
    token_left, session_left = await lifetimes(settings, body["refresh_token"])
    assert token_left <= session_left <= timedelta(hours=2)
    assert session_left > timedelta(hours=2) - timedelta(minutes=1)  # not moved by the refresh


async def test_session_max_days_caps_the_first_refresh_token(
    settings: Settings, start_app: StartApp, alice: Account
) -> None:
    short = await start_app(create_app(with_settings(settings, session_max_days=1)))
    body = await login(short, alice)
    assert body["refresh_expires_in"] == 86400  # not REFRESH_TOKEN_EXPIRE_DAYS' 15 days
    token_left, session_left = await lifetimes(settings, body["refresh_token"])
    assert token_left <= session_left <= timedelta(days=1)
