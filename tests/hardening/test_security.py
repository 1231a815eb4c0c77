"""Attacks tried against the API: other people's orders, leaks, forged fields, injection,
hostile bodies, password guessing.

Already pinned elsewhere, so not repeated here (RELIABILITY.md lists them): wrong password and
unknown email give the same 401 body and take about the same time
(tests/features/test_token.py), forged, expired, ``alg: none`` and deleted users' tokens are
401 (tests/platform/test_authentication.py), /token's own stricter limit for one account
(tests/platform/test_rate_limit.py), bodies over 1 MiB are 413 (tests/platform/test_body_size.py),
POST /orders ignores a sent user_id/status/id/processed_at (tests/features/test_create_order.py).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from shared.settings import Settings
from tests.accounts import Account, make_account
from tests.apps import StartApp, metrics_headers, with_settings
from tests.orders import ONE_ITEM, create_order, evict

Client = AsyncTestClient[Litestar]

# --- ownership -----------------------------------------------------------------------------

ORDER_ENDPOINTS = ["GET /orders/{id}", "PATCH /orders/{id}", "GET /orders/user/{owner}"]


@pytest.mark.parametrize("slash", ["", "/"], ids=["bare", "slash"])
@pytest.mark.parametrize("cache", ["warm", "cold"])
@pytest.mark.parametrize("endpoint", ORDER_ENDPOINTS)
async def test_nobody_but_the_owner_reaches_an_order(
    client: Client,
    alice: Account,
    bob: Account,
    settings: Settings,
    endpoint: str,
    cache: str,
    slash: str,
) -> None:
    """Both ways round: Alice's order is invisible to Bob, and Bob's to Alice."""
    for owner, intruder in ((alice, bob), (bob, alice)):
        order = await create_order(client, owner)
        if cache == "cold":
            await evict(settings, order["id"])
        method, template = endpoint.split(" ")
        path = template.format(id=order["id"], owner=owner.id) + slash
        body = {"status": "CANCELED"} if method == "PATCH" else None

        response = await client.request(method, path, json=body, headers=intruder.headers)

        if "/user/" in template:
            assert response.status_code == 403
        else:
            unknown = template.format(id=uuid.uuid4(), owner=owner.id) + slash
            missing = await client.request(method, unknown, json=body, headers=intruder.headers)
            assert response.status_code == missing.status_code == 404
            assert response.json() == missing.json()  # nothing tells "exists" from "not yours"
        mine = await client.get(f"/orders/{order['id']}", headers=owner.headers)
        assert (mine.status_code, mine.json()) == (200, order)  # untouched, cache included


# --- leaks ---------------------------------------------------------------------------------


async def test_no_response_anywhere_carries_a_password_or_its_hash(
    client: Client, settings: Settings
) -> None:
    password = f"pw-{secrets.token_hex(8)}"
    email = f"leak-{uuid.uuid4().hex[:12]}@example.com"
    responses = [
        await client.post("/register", json={"email": email, "password": password}),
        await client.post("/register", json={"email": email, "password": password}),  # 409
        await client.post("/register", json={"email": email, "password": password * 10}),
        await client.post("/token", data={"username": email, "password": "wrong password"}),
        await client.post("/token", data={"username": email, "password": password * 10}),
    ]
    issued = await client.post("/token", data={"username": email, "password": password})
    responses.append(issued)
    me = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    created = await client.post("/orders", json=ONE_ITEM, headers=me)
    order_id = created.json()["id"]
    user_id = created.json()["user_id"]
    responses += [
        created,
        await client.get(f"/orders/{order_id}", headers=me),
        await client.get(f"/orders/{order_id}", headers=me),  # the cached copy
        await client.patch(f"/orders/{order_id}", json={"status": "PAID"}, headers=me),
        await client.patch(f"/orders/{order_id}", json={"status": "PENDING"}, headers=me),
        await client.get(f"/orders/user/{user_id}", headers=me),
        await client.get(f"/orders/user/{user_id + 1}", headers=me),
        await client.get(f"/orders/{uuid.uuid4()}", headers=me),
        await client.get("/orders/not-an-id", headers=me),
        await client.delete(f"/orders/{order_id}", headers=me),
        await client.get("/health"),
        await client.get("/ready"),
        await client.get("/schema/openapi.json"),
        await client.get("/metrics", headers=metrics_headers(settings)),
    ]
    for response in responses:
        text = f"{response.headers}\n{response.text}"
        assert "$2b$" not in text, response.request.url
        assert "password_hash" not in text, response.request.url
        assert password not in text, response.request.url


# --- mass assignment -----------------------------------------------------------------------


async def test_a_patch_changes_the_status_and_nothing_else(
    client: Client, alice: Account, bob: Account
) -> None:
    order = await create_order(client, alice)
    forged = {
        "status": "PAID",
        "id": str(uuid.uuid4()),
        "user_id": bob.id,
        "items": [{"name": "free", "quantity": 1, "price": "0.01"}],
        "total_price": "0.01",
        "processed_at": "2020-01-01T00:00:00Z",
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": "2020-01-01T00:00:00Z",
    }
    response = await client.patch(f"/orders/{order['id']}", json=forged, headers=alice.headers)
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["status"] == "PAID"
    unchanged = ("id", "user_id", "items", "total_price", "processed_at", "created_at")
    assert {k: patched[k] for k in unchanged} == {k: order[k] for k in unchanged}
    assert patched["updated_at"] > order["updated_at"]
    assert (await client.get(f"/orders/user/{bob.id}", headers=bob.headers)).json() == []


async def test_registration_ignores_a_sent_id_and_created_at(client: Client) -> None:
    body = {
        "email": f"forge-{uuid.uuid4().hex[:12]}@example.com",
        "password": "long enough",
        "id": 2_000_000_000,
        "created_at": "2020-01-01T00:00:00Z",
    }
    response = await client.post("/register", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["id"] != body["id"]
    assert not response.json()["created_at"].startswith("2020")


# --- SQL injection --------------------------------------------------------------------------

INJECTIONS = [
    "Robert'); DROP TABLE orders;--",
    "1' OR '1'='1",
    '%" OR ""="',
    "'; SELECT pg_sleep(10); --",
    "\\'; TRUNCATE users CASCADE; --",
]


async def test_sql_in_item_names_is_stored_as_text(client: Client, alice: Account) -> None:
    body = {"items": [{"name": name, "quantity": 1, "price": "1.00"} for name in INJECTIONS]}
    order = await create_order(client, alice, body)
    assert [item["name"] for item in order["items"]] == INJECTIONS
    await evict_and_check(client, alice, order)


async def evict_and_check(client: Client, account: Account, order: dict[str, Any]) -> None:
    listed = await client.get(f"/orders/user/{account.id}", headers=account.headers)
    assert listed.status_code == 200
    assert order in listed.json()  # read back from PostgreSQL, verbatim; the table is there


async def test_sql_in_an_email_is_an_email(client: Client) -> None:
    email = f"x'or'1'='1';drop/**/table/**/users;--{uuid.uuid4().hex[:8]}@example.com"
    account = await make_account_with(client, email)
    issued = await client.post("/token", data={"username": email, "password": "long enough"})
    assert issued.status_code == 200
    assert account["email"] == email


async def make_account_with(client: Client, email: str) -> dict[str, Any]:
    created = await client.post("/register", json={"email": email, "password": "long enough"})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


@pytest.mark.parametrize("username", ["' OR '1'='1' --", "admin'--", "%", "*"])
async def test_sql_in_a_login_logs_nobody_in(client: Client, alice: Account, username: str) -> None:
    response = await client.post("/token", data={"username": username, "password": "' OR ''='"})
    assert response.status_code == 401


async def test_sql_in_an_idempotency_key_is_just_a_key(client: Client, alice: Account) -> None:
    first = await create_order(client, alice, ONE_ITEM, **{"Idempotency-Key": "k' OR '1'='1"})
    other = await create_order(client, alice, ONE_ITEM, **{"Idempotency-Key": "k' OR '1'='2"})
    again = await create_order(client, alice, ONE_ITEM, **{"Idempotency-Key": "k' OR '1'='1"})
    assert first["id"] == again["id"] != other["id"]


@pytest.mark.parametrize(
    "path",
    [
        "/orders/user/1%20OR%201=1",
        "/orders/user/1;DROP%20TABLE%20orders",
        "/orders/1'%20OR%20'1'='1",
        "/orders/user/{me}?limit=1;DROP%20TABLE%20orders",
        "/orders/user/{me}?offset=0%20OR%201=1",
    ],
)
async def test_sql_in_ids_and_paging_is_a_4xx(client: Client, alice: Account, path: str) -> None:
    response = await client.get(path.format(me=alice.id), headers=alice.headers)
    assert response.status_code in (404, 422)
    assert response.json()["detail"]


# --- hostile bodies ------------------------------------------------------------------------

DEEP = 100_000  # well inside 1 MiB


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"items": ' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"a":' * (DEEP // 5) + b"1" + b"}" * (DEEP // 5),
        b'{"items": [{"name": "\xff\xfe", "quantity": 1, "price": "1.00"}]}',  # not UTF-8
    ],
    ids=["deep-array", "deep-items", "deep-object", "not-utf8"],
)
@pytest.mark.parametrize("route", ["POST /orders", "POST /register", "PATCH /orders/{id}"])
async def test_hostile_json_is_a_422_not_a_500(
    client: Client, alice: Account, route: str, body: bytes
) -> None:
    method, template = route.split(" ")
    path = template.format(id=uuid.uuid4())
    headers = {**alice.headers, "Content-Type": "application/json"}
    response = await client.request(method, path, content=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"items": [{"name": "a", "quantity": 1, "price": "1.00"}] * 20_000},
        {"items": [{"name": "a" * 900_000, "quantity": 1, "price": "1.00"}]},
        b'{"items": [{"name": "a", "quantity": 1' + b"0" * 5000 + b', "price": "1.00"}]}',
        {"items": [{"name": "a", "quantity": 1, "price": "1e999999999"}]},
        {"items": [{"name": "a", "quantity": 1, "price": "1e-999999999"}]},
        {"items": [{"name": "a", "quantity": 1, "price": "1.00"}], "total_price": "1e999999999"},
    ],
    ids=["20k-items", "900k-name", "5000-digit-quantity", "huge-price", "tiny-price", "huge-total"],
)
async def test_huge_values_are_a_422_not_a_500(
    client: Client, alice: Account, body: dict[str, Any] | bytes
) -> None:
    content = body if isinstance(body, bytes) else msgspec.json.encode(body)
    headers = {**alice.headers, "Content-Type": "application/json"}
    response = await client.post("/orders", content=content, headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"]


# --- password guessing ----------------------------------------------------------------------


async def test_guessing_across_many_accounts_meets_the_login_limit(
    settings: Settings, start_app: StartApp
) -> None:
    """The /token budget is per client, not per account: spraying one password over many
    emails is stopped as soon as guessing one account's password is."""
    guarded = with_settings(
        settings,
        token_rate_limit="3/minute",
        redis_prefix=f"{settings.redis_prefix}guess-{secrets.token_hex(3)}:",
    )
    client = await start_app(create_app(guarded))
    victim = await make_account(client)  # its own login uses one of the 3
    statuses = [
        (
            await client.post(
                "/token",
                data={"username": f"u{i}-{uuid.uuid4().hex[:6]}@example.com", "password": "x"},
            )
        ).status_code
        for i in range(3)
    ]
    right = await client.post(
        "/token", data={"username": victim.email, "password": victim.password}
    )
    assert statuses == [401, 401, 429]
    assert right.status_code == 429
    assert int(right.headers["retry-after"]) > 0
