"""POST /orders, as API.md's orders section states it."""

from __future__ import annotations

import asyncio
import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import create_async_engine

from features.create_order import schemas as create_order_schemas
from shared.models import Order, OutboxEvent
from shared.orders.money import MoneyInput, parse_amount
from shared.settings import Settings
from tests.accounts import Account
from tests.orders import ONE_ITEM, Client, create_order


async def test_created_order_has_the_contract_shape_and_location(
    client: Client, alice: Account
) -> None:
    body = {
        "items": [
            {"name": "Item 1", "quantity": 2, "price": "100.50"},
            {"name": "Item 2", "quantity": 1, "price": 250},
        ]
    }
    response = await client.post("/orders", json=body, headers=alice.headers)
    assert response.status_code == 201
    order = response.json()
    assert set(order) == {
        "id",
        "user_id",
        "items",
        "total_price",
        "status",
        "created_at",
        "updated_at",
        "processed_at",
    }
    assert uuid.UUID(order["id"])
    assert response.headers["location"] == f"/orders/{order['id']}"
    assert order["user_id"] == alice.id
    assert order["items"] == [
        {"name": "Item 1", "quantity": 2, "price": "100.50"},
        {"name": "Item 2", "quantity": 1, "price": "250.00"},
    ]
    assert order["total_price"] == "451.00"
    assert order["status"] == "PENDING"
    assert order["processed_at"] is None
    assert order["created_at"].endswith("Z")


async def test_trailing_slash_creates_too(client: Client, alice: Account) -> None:
    response = await client.post("/orders/", json=ONE_ITEM, headers=alice.headers)
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("items", "total"),
    [
        ([{"name": "a", "quantity": 3, "price": 0.10}], "0.30"),
        ([{"name": "a", "quantity": 3, "price": "0.1"}], "0.30"),
        (
            [
                {"name": "a", "quantity": 1, "price": 0.1},
                {"name": "b", "quantity": 1, "price": 0.2},
            ],
            "0.30",
        ),
        ([{"name": "a", "quantity": 10_000, "price": "9999.99"}], "99999900.00"),
        ([{"name": "a", "quantity": 7, "price": "1e1"}], "70.00"),
    ],
)
async def test_money_is_exact_decimal(
    client: Client, alice: Account, items: list[dict[str, Any]], total: str
) -> None:
    order = await create_order(client, alice, {"items": items})
    assert order["total_price"] == total
    fetched = await client.get(f"/orders/{order['id']}", headers=alice.headers)
    assert fetched.json()["total_price"] == total


async def test_a_float_that_is_not_two_places_is_refused_not_rounded(
    client: Client, alice: Account
) -> None:
    raw = b'{"items": [{"name": "a", "quantity": 1, "price": 0.1000000000000000001}]}'
    response = await client.post(
        "/orders", content=raw, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["field"] == "items[0].price"


@pytest.mark.parametrize("total", ["451.00", "451", 451, 451.0, "451.0"])
async def test_a_sent_total_equal_to_the_sum_is_accepted(
    client: Client, alice: Account, total: object
) -> None:
    body = {
        "items": [
            {"name": "Item 1", "quantity": 2, "price": "100.50"},
            {"name": "Item 2", "quantity": 1, "price": "250"},
        ],
        "total_price": total,
    }
    order = await create_order(client, alice, body)
    assert order["total_price"] == "451.00"


async def test_each_amount_is_parsed_once(
    client: Client, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decode parses each price and the sent total; the checks and the insert reuse them."""
    parsed: list[str] = []

    def counted(value: MoneyInput, *, field: str) -> Decimal:
        parsed.append(field)
        return parse_amount(value, field=field)

    monkeypatch.setattr(create_order_schemas, "parse_amount", counted)
    body = {
        "items": [
            {"name": "Item 1", "quantity": 2, "price": "100.50"},
            {"name": "Item 2", "quantity": 1, "price": 250},
        ],
        "total_price": "451",
    }
    order = await create_order(client, alice, body)

    assert order["total_price"] == "451.00"
    assert sorted(parsed) == ["price", "price", "total_price"]


@pytest.mark.parametrize("total", ["451.01", "450.99", 0, "-451", "451.001"])
async def test_a_sent_total_that_differs_is_422(
    client: Client, alice: Account, total: object
) -> None:
    body = {
        "items": [
            {"name": "Item 1", "quantity": 2, "price": "100.50"},
            {"name": "Item 2", "quantity": 1, "price": "250"},
        ],
        "total_price": total,
    }
    response = await client.post("/orders", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["field"] == "total_price"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": [{"name": "a", "quantity": 1, "price": "1"}] * 101}, "items"),
        ({"items": "nope"}, "items"),
        ({"items": [{"quantity": 1, "price": "1"}]}, "items[0].name"),
        ({"items": [{"name": "", "quantity": 1, "price": "1"}]}, "items[0].name"),
        ({"items": [{"name": "x" * 201, "quantity": 1, "price": "1"}]}, "items[0].name"),
        ({"items": [{"name": 5, "quantity": 1, "price": "1"}]}, "items[0].name"),
        ({"items": [{"name": "a", "quantity": 0, "price": "1"}]}, "items[0].quantity"),
        ({"items": [{"name": "a", "quantity": -1, "price": "1"}]}, "items[0].quantity"),
        ({"items": [{"name": "a", "quantity": 10_001, "price": "1"}]}, "items[0].quantity"),
        ({"items": [{"name": "a", "quantity": 1.5, "price": "1"}]}, "items[0].quantity"),
        ({"items": [{"name": "a", "quantity": True, "price": "1"}]}, "items[0].quantity"),
        ({"items": [{"name": "a", "quantity": "many", "price": "1"}]}, "items[0].quantity"),
        ({"items": [{"name": "a", "quantity": 1, "price": "0"}]}, "items[0].price"),
        ({"items": [{"name": "a", "quantity": 1, "price": -1}]}, "items[0].price"),
        ({"items": [{"name": "a", "quantity": 1, "price": "1.001"}]}, "items[0].price"),
        ({"items": [{"name": "a", "quantity": 1, "price": "NaN"}]}, "items[0].price"),
        ({"items": [{"name": "a", "quantity": 1, "price": "Infinity"}]}, "items[0].price"),
        ({"items": [{"name": "a", "quantity": 1, "price": "abc"}]}, "items[0].price"),
        ({"items": [{"name": "a", "quantity": 1, "price": None}]}, "items[0].price"),
        ({"items": [{"name": "a", "quantity": 1, "price": 1e30}]}, "items[0].price"),
        (
            {"items": [{"name": "a", "quantity": 1, "price": "1"}], "total_price": "x"},
            "total_price",
        ),
    ],
)
async def test_invalid_bodies_are_422_naming_the_field(
    client: Client, alice: Account, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/orders", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["detail"]


async def test_a_total_past_numeric_10_2_is_422_not_a_database_error(
    client: Client, alice: Account
) -> None:
    body = {"items": [{"name": "a", "quantity": 10_000, "price": "10000.00"}]}
    response = await client.post("/orders", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["field"] == "total_price"


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("items[0].price", {"items": [{"name": "a", "quantity": 1, "price": "1_000"}]}),
        ("items[0].price", {"items": [{"name": "a", "quantity": 1, "price": " 1"}]}),
        ("items[0].price", {"items": [{"name": "a", "quantity": 1, "price": "١٢"}]}),
        ("total_price", {**ONE_ITEM, "total_price": "2_01"}),
        ("total_price", {**ONE_ITEM, "total_price": "201.00 "}),
    ],
)
async def test_money_strings_only_python_would_read_are_422(
    client: Client, alice: Account, field: str, body: dict[str, Any]
) -> None:
    """Python's Decimal() reads "1_000", " 1" and non-ASCII digits; money is plain digits."""
    response = await client.post("/orders", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["detail"] == f"{field}: Invalid decimal string"


@pytest.mark.parametrize("total", ["sNaN", "-sNaN", "NaN", "Infinity"])
async def test_a_total_that_is_not_a_number_is_422_not_500(
    client: Client, alice: Account, total: str
) -> None:
    response = await client.post(
        "/orders", json={**ONE_ITEM, "total_price": total}, headers=alice.headers
    )
    assert response.status_code == 422, response.text
    assert response.json() == {
        "status_code": 422,
        "detail": f"total_price {total} does not equal the sum of the items 201.00",
        "field": "total_price",
    }


async def test_the_largest_total_that_fits_is_accepted(client: Client, alice: Account) -> None:
    body = {"items": [{"name": "a", "quantity": 1, "price": "99999999.99"}]}
    order = await create_order(client, alice, body)
    assert order["total_price"] == "99999999.99"


async def test_sent_user_id_status_id_and_processed_at_are_ignored(
    client: Client, alice: Account, bob: Account
) -> None:
    forged_id = str(uuid.uuid4())
    body = {
        **ONE_ITEM,
        "user_id": bob.id,
        "status": "SHIPPED",
        "id": forged_id,
        "processed_at": "2020-01-01T00:00:00Z",
        "created_at": "2020-01-01T00:00:00Z",
    }
    order = await create_order(client, alice, body)
    assert order["user_id"] == alice.id
    assert order["status"] == "PENDING"
    assert order["id"] != forged_id
    assert order["processed_at"] is None
    assert not order["created_at"].startswith("2020")


async def test_creating_without_a_token_is_401(client: Client) -> None:
    response = await client.post("/orders", json=ONE_ITEM)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_the_new_order_is_cached_at_once(client: Client, alice: Account) -> None:
    order = await create_order(client, alice)
    response = await client.get(f"/orders/{order['id']}", headers=alice.headers)
    assert response.headers["x-cache"] == "HIT"


async def _count_orders_and_events(settings: Settings, user_id: int) -> tuple[int, int]:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            orders = await conn.scalar(select(func.count()).where(Order.user_id == user_id))
            events = await conn.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .join(Order, Order.id == OutboxEvent.order_id)
                .where(Order.user_id == user_id)
            )
    finally:
        await engine.dispose()
    return int(orders or 0), int(events or 0)


async def test_each_order_is_committed_with_exactly_one_event(
    client: Client, alice: Account, settings: Settings
) -> None:
    await create_order(client, alice)
    await create_order(client, alice)
    assert await _count_orders_and_events(settings, alice.id) == (2, 2)


async def test_a_repeated_idempotency_key_returns_the_first_order_and_makes_nothing_new(
    client: Client, alice: Account, settings: Settings
) -> None:
    first = await create_order(client, alice, ONE_ITEM, **{"Idempotency-Key": "order-1"})
    again = await create_order(client, alice, ONE_ITEM, **{"Idempotency-Key": "order-1"})
    assert again["id"] == first["id"]
    assert await _count_orders_and_events(settings, alice.id) == (1, 1)


async def test_the_same_key_with_the_same_order_spelled_differently_is_a_retry(
    client: Client, alice: Account
) -> None:
    first = await create_order(
        client,
        alice,
        {"items": [{"name": "a", "quantity": 1, "price": "1.5"}]},
        **{"Idempotency-Key": "k"},
    )
    again = await create_order(
        client,
        alice,
        {"items": [{"name": "a", "quantity": 1, "price": 1.50}], "total_price": "1.50"},
        **{"Idempotency-Key": "k"},
    )
    assert again["id"] == first["id"]


async def test_the_same_key_with_a_different_body_is_422(client: Client, alice: Account) -> None:
    await create_order(client, alice, ONE_ITEM, **{"Idempotency-Key": "k2"})
    other = {"items": [{"name": "Item 1", "quantity": 3, "price": "100.50"}]}
    response = await client.post(
        "/orders", json=other, headers={**alice.headers, "Idempotency-Key": "k2"}
    )
    assert response.status_code == 422
    assert response.json()["field"] == "Idempotency-Key"


async def test_idempotency_keys_are_per_user(client: Client, alice: Account, bob: Account) -> None:
    mine = await create_order(client, alice, ONE_ITEM, **{"Idempotency-Key": "shared-key"})
    theirs = await create_order(client, bob, ONE_ITEM, **{"Idempotency-Key": "shared-key"})
    assert mine["id"] != theirs["id"]
    assert theirs["user_id"] == bob.id


async def test_concurrent_retries_with_one_key_make_one_order(
    client: Client, alice: Account, settings: Settings
) -> None:
    responses = await asyncio.gather(
        *[
            client.post(
                "/orders", json=ONE_ITEM, headers={**alice.headers, "Idempotency-Key": "race"}
            )
            for _ in range(8)
        ]
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await _count_orders_and_events(settings, alice.id) == (1, 1)


async def test_an_idempotency_key_over_255_characters_is_422(
    client: Client, alice: Account
) -> None:
    response = await client.post(
        "/orders", json=ONE_ITEM, headers={**alice.headers, "Idempotency-Key": "k" * 256}
    )
    assert response.status_code == 422


async def test_an_expired_idempotency_key_makes_a_new_order(
    client: Client, alice: Account, settings: Settings
) -> None:
    first = await create_order(client, alice, ONE_ITEM, **{"Idempotency-Key": "old"})
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(Order)
                .where(Order.id == uuid.UUID(first["id"]))
                .values(created_at=func.now() - func.make_interval(0, 0, 0, 0, 25))
            )
    finally:
        await engine.dispose()
    second = await create_order(client, alice, ONE_ITEM, **{"Idempotency-Key": "old"})
    assert second["id"] != first["id"]


async def test_the_event_is_published_and_marked_sent_after_the_response(
    client: Client, alice: Account, settings: Settings
) -> None:
    order = await create_order(client, alice)
    engine = create_async_engine(settings.database_url)
    try:
        for _ in range(100):
            async with engine.connect() as conn:
                sent_at = await conn.scalar(
                    select(OutboxEvent.sent_at).where(
                        OutboxEvent.order_id == uuid.UUID(order["id"])
                    )
                )
            if sent_at is not None:
                break
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()
    assert sent_at is not None


# Found by tests/hardening/test_schemathesis.py:


async def test_an_item_name_with_a_nul_character_is_422_not_500(
    client: Client, alice: Account
) -> None:
    """JSONB cannot store NUL: the insert failed with a 500 before."""
    body = {"items": [{"name": "a\x00b", "quantity": 1, "price": "1.00"}]}
    response = await client.post("/orders", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["field"] == "items[0].name"


async def test_an_idempotency_key_with_a_nul_character_is_422_not_500(
    client: Client, alice: Account
) -> None:
    response = await client.post(
        "/orders", json=ONE_ITEM, headers={**alice.headers, "Idempotency-Key": "a\x00b"}
    )
    assert response.status_code == 422


async def test_openapi_says_money_is_a_string_or_a_number(client: Client, alice: Account) -> None:
    """Decimal was documented as a string only, though JSON numbers are accepted too."""
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    price = schemas["NewItem"]["properties"]["price"]
    total = schemas["CreateOrderRequest"]["properties"]["total_price"]
    assert [arm["type"] for arm in price["anyOf"]] == ["string", "number"]
    assert [arm["type"] for arm in total["anyOf"]] == ["string", "number", "null"]
    pattern = price["anyOf"][0]["pattern"]
    assert re.search(pattern, "100.50")
    assert not re.search(pattern, "100.505")
    body = {"items": [{"name": "n", "quantity": 2, "price": 100.5}], "total_price": 201}
    assert (await create_order(client, alice, body))["total_price"] == "201.00"


async def test_the_documented_example_is_an_order_that_can_be_created(
    client: Client, alice: Account
) -> None:
    """The example total (451.00) did not add up to the example item (2 × 100.50)."""
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    item = {name: prop["examples"][0] for name, prop in schemas["NewItem"]["properties"].items()}
    total = schemas["CreateOrderRequest"]["properties"]["total_price"]["examples"][0]
    order = await create_order(client, alice, {"items": [item], "total_price": total})
    assert order["total_price"] == total


async def test_openapi_documents_413_and_503(client: Client) -> None:
    operation = (await client.get("/schema/openapi.json")).json()["paths"]["/orders"]["post"]
    assert {"401", "413", "422", "429", "503"} <= set(operation["responses"])
