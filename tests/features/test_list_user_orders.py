"""GET /orders/user/{user_id}: own orders only, newest first, bounded pages."""

from __future__ import annotations

import pytest

from tests.accounts import Account
from tests.orders import Client, create_order


async def test_lists_own_orders_newest_first(client: Client, alice: Account) -> None:
    created = [await create_order(client, alice) for _ in range(3)]
    response = await client.get(f"/orders/user/{alice.id}", headers=alice.headers)
    assert response.status_code == 200
    assert [o["id"] for o in response.json()] == [o["id"] for o in reversed(created)]
    assert response.json()[0] == created[-1]


async def test_trailing_slash_lists_too(client: Client, alice: Account) -> None:
    await create_order(client, alice)
    response = await client.get(f"/orders/user/{alice.id}/", headers=alice.headers)
    assert response.status_code == 200
    assert len(response.json()) == 1


async def test_a_user_without_orders_gets_an_empty_list(client: Client, alice: Account) -> None:
    response = await client.get(f"/orders/user/{alice.id}", headers=alice.headers)
    assert response.json() == []


async def test_limit_and_offset_page_through_the_list(client: Client, alice: Account) -> None:
    created = [(await create_order(client, alice))["id"] for _ in range(5)]
    newest_first = list(reversed(created))
    pages = [
        (
            await client.get(
                f"/orders/user/{alice.id}?limit=2&offset={offset}", headers=alice.headers
            )
        ).json()
        for offset in (0, 2, 4)
    ]
    assert [[o["id"] for o in page] for page in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:],
    ]


async def test_the_default_page_is_50(client: Client, alice: Account) -> None:
    for _ in range(52):
        await create_order(client, alice)
    response = await client.get(f"/orders/user/{alice.id}", headers=alice.headers)
    assert len(response.json()) == 50


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "offset=-1",
        "offset=x",
        "offset=99999999999999999999",
    ],
)
async def test_out_of_bounds_paging_is_422(client: Client, alice: Account, query: str) -> None:
    response = await client.get(f"/orders/user/{alice.id}?{query}", headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["detail"]


async def test_another_users_list_is_403(client: Client, alice: Account, bob: Account) -> None:
    await create_order(client, bob)
    response = await client.get(f"/orders/user/{bob.id}", headers=alice.headers)
    assert response.status_code == 403
    assert "items" not in response.text


async def test_a_list_shows_only_the_callers_orders(
    client: Client, alice: Account, bob: Account
) -> None:
    await create_order(client, alice)
    await create_order(client, bob)
    response = await client.get(f"/orders/user/{alice.id}", headers=alice.headers)
    assert {o["user_id"] for o in response.json()} == {alice.id}


async def test_a_non_numeric_user_id_is_4xx(client: Client, alice: Account) -> None:
    response = await client.get("/orders/user/me", headers=alice.headers)
    assert 400 <= response.status_code < 500


async def test_a_list_reflects_a_patch(client: Client, alice: Account) -> None:
    order = await create_order(client, alice)
    await client.patch(f"/orders/{order['id']}", json={"status": "PAID"}, headers=alice.headers)
    response = await client.get(f"/orders/user/{alice.id}", headers=alice.headers)
    assert response.json()[0]["status"] == "PAID"


async def test_openapi_documents_the_404_for_an_id_that_is_not_a_number(client: Client) -> None:
    """Found by tests/hardening/test_schemathesis.py: /orders/user/me was an undocumented 404."""
    schema = (await client.get("/schema/openapi.json")).json()
    responses = schema["paths"]["/orders/user/{user_id}"]["get"]["responses"]
    assert (await client.get("/orders/user/me")).status_code == 404
    assert {"401", "403", "404", "422", "429", "503"} <= set(responses)
