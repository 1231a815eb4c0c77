"""GET /orders/user/{user_id}: own orders only, newest first, bounded pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import asyncpg
import pytest

from features.list_user_orders.pages import Position
from shared.db import asyncpg_dsn
from shared.settings import Settings
from tests.accounts import Account
from tests.orders import Client, create_order, insert_orders
from tools.explain_orders import plan, plan_problems, shapes

# RFC 8288, as the contract shapes it: one link, a path-absolute reference, rel="next".
LINK = re.compile(r'^<(/orders/user/\d+\?[^>]*after=[A-Za-z0-9_-]+)>; rel="next"$')


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


# --- keyset pages (issue 20) ---


def next_link(response: Any) -> str | None:
    """The next page's URL from the Link header, None on the last page."""
    header = response.headers.get("link")
    if header is None:
        return None
    match = LINK.match(header)
    assert match, header
    return match[1]


async def walk(client: Client, account: Account, url: str) -> tuple[list[str], int]:
    """Every order id from ``url`` on, following rel="next"; and how many pages it took."""
    ids: list[str] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        response = await client.get(next_url, headers=account.headers)
        assert response.status_code == 200, response.text
        ids += [o["id"] for o in response.json()]
        pages += 1
        next_url = next_link(response)
    return ids, pages


async def test_keyset_pages_over_equal_created_ats_return_every_order_once_in_order(
    client: Client, alice: Account, settings: Settings
) -> None:
    """10,000 orders created in the same microsecond: only the id tells them apart, so a
    cursor of created_at alone would skip or repeat; this one returns each once, in order."""
    await insert_orders(settings, alice.id, 10_000)
    ids, pages = await walk(client, alice, f"/orders/user/{alice.id}?limit=100")
    assert pages == 100
    assert len(ids) == 10_000
    assert len(set(ids)) == 10_000
    # Equal created_at: newest first is then id descending (PostgreSQL's uuid order).
    assert ids == sorted(ids, key=lambda i: UUID(i).bytes, reverse=True)


async def test_the_link_keeps_the_limit_and_the_filters(
    client: Client, alice: Account, settings: Settings
) -> None:
    await insert_orders(settings, alice.id, 5, statuses=("PAID", "SHIPPED"))
    query = "limit=2&status=PAID&status=SHIPPED&created_from=2000-01-01T00:00:00Z"
    response = await client.get(f"/orders/user/{alice.id}?{query}", headers=alice.headers)
    link = next_link(response)
    assert link is not None
    assert link.startswith(f"/orders/user/{alice.id}?limit=2&")
    params = parse_qs(urlsplit(link).query)
    assert params["status"] == ["PAID", "SHIPPED"]
    assert params["created_from"] == ["2000-01-01T00:00:00Z"]
    assert "offset" not in params
    assert len(params["after"]) == 1


async def test_the_last_page_has_no_link(client: Client, alice: Account) -> None:
    for _ in range(3):
        await create_order(client, alice)
    first = await client.get(f"/orders/user/{alice.id}?limit=2", headers=alice.headers)
    link = next_link(first)
    assert link is not None
    last = await client.get(link, headers=alice.headers)
    assert len(last.json()) == 1
    assert "link" not in last.headers
    # A page that ends exactly at the last order has no next either.
    exact = await client.get(f"/orders/user/{alice.id}?limit=3", headers=alice.headers)
    assert len(exact.json()) == 3
    assert "link" not in exact.headers


async def test_an_offset_page_links_to_the_keyset_page_after_it(
    client: Client, alice: Account
) -> None:
    """The contract: every answer that has more carries the link, an offset one too."""
    created = [(await create_order(client, alice))["id"] for _ in range(5)]
    newest_first = list(reversed(created))
    page = await client.get(f"/orders/user/{alice.id}?limit=2&offset=1", headers=alice.headers)
    assert [o["id"] for o in page.json()] == newest_first[1:3]
    link = next_link(page)
    assert link is not None
    assert "offset" not in link
    following = await client.get(link, headers=alice.headers)
    assert [o["id"] for o in following.json()] == newest_first[3:5]


async def test_filters_by_status(client: Client, alice: Account, settings: Settings) -> None:
    await insert_orders(settings, alice.id, 12, statuses=("PENDING", "PAID", "SHIPPED", "CANCELED"))
    url = f"/orders/user/{alice.id}"
    paid = (await client.get(f"{url}?status=PAID", headers=alice.headers)).json()
    assert len(paid) == 3
    assert {o["status"] for o in paid} == {"PAID"}
    two = (await client.get(f"{url}?status=PAID&status=CANCELED", headers=alice.headers)).json()
    assert len(two) == 6
    assert {o["status"] for o in two} == {"PAID", "CANCELED"}


async def test_filters_by_creation_time_inclusive_from_exclusive_to(
    client: Client, alice: Account, settings: Settings
) -> None:
    newest = datetime(2026, 1, 10, tzinfo=UTC)
    # created 2026-01-10, -09, -08, … -01: one a day
    await insert_orders(settings, alice.id, 10, newest=newest, step=timedelta(days=1))
    window = "created_from=2026-01-03T00:00:00Z&created_to=2026-01-06T00:00:00%2B00:00"
    url = f"/orders/user/{alice.id}?{window}"
    days = [o["created_at"][:10] for o in (await client.get(url, headers=alice.headers)).json()]
    assert days == ["2026-01-05", "2026-01-04", "2026-01-03"]
    # Another zone, the same instant.
    shifted = f"/orders/user/{alice.id}?created_from=2026-01-09T02:00:00%2B02:00"
    days = [o["created_at"][:10] for o in (await client.get(shifted, headers=alice.headers)).json()]
    assert days == ["2026-01-10", "2026-01-09"]


@pytest.mark.parametrize("style", ["keyset", "offset"])
async def test_filters_combine_with_both_paging_styles(
    client: Client, alice: Account, settings: Settings, style: str
) -> None:
    newest = datetime(2026, 3, 1, tzinfo=UTC)
    await insert_orders(
        settings, alice.id, 40, newest=newest, step=timedelta(hours=1), statuses=("PAID", "PENDING")
    )
    # PAID: an even number of hours back from newest; created_to (20:00Z, exclusive) cuts off
    # hours 0..4 back, created_from (inclusive) keeps up to 24 back: 6, 8, …, 24.
    query = "status=PAID&created_to=2026-03-01T00:00:00%2B04:00&created_from=2026-02-28T00:00:00Z"
    url = f"/orders/user/{alice.id}?{query}"
    everything = (await client.get(url, headers=alice.headers)).json()
    expected = [o["id"] for o in everything]
    assert {o["status"] for o in everything} == {"PAID"}
    assert len(expected) == 10
    if style == "keyset":
        ids, pages = await walk(client, alice, f"{url}&limit=3")
        assert pages == 4
    else:
        ids = []
        for offset in range(0, 12, 3):
            page = await client.get(f"{url}&limit=3&offset={offset}", headers=alice.headers)
            ids += [o["id"] for o in page.json()]
    assert ids == expected


@pytest.mark.parametrize(
    "query",
    [
        "status=LOST",
        "status=paid",
        "created_from=yesterday",
        "created_from=2026-01-01T00:00:00",  # naive: which zone? refused, not guessed
        "created_to=2026-01-01",
        "created_from=2026-01-02T00:00:00Z&created_to=2026-01-01T00:00:00Z",
        "created_from=2026-01-01T00:00:00Z&created_to=2026-01-01T00:00:00Z",
        "created_from=0001-01-01T00:00:00%2B01:00",  # no instant in UTC
        "created_to=9999-12-31T23:59:59-01:00",
        "created_from=2026-01-01T00:00:00%2B25:00",
    ],
)
async def test_a_bad_filter_is_422(client: Client, alice: Account, query: str) -> None:
    response = await client.get(f"/orders/user/{alice.id}?{query}", headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


async def a_cursor(client: Client, account: Account) -> str:
    for _ in range(2):
        await create_order(client, account)
    response = await client.get(f"/orders/user/{account.id}?limit=1", headers=account.headers)
    link = next_link(response)
    assert link is not None
    return parse_qs(urlsplit(link).query)["after"][0]


def flipped(cursor: str, at: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return cursor[:at] + alphabet[(alphabet.index(cursor[at]) + 1) % 64] + cursor[at + 1 :]


async def test_a_tampered_cursor_is_422(client: Client, alice: Account) -> None:
    cursor = await a_cursor(client, alice)
    url = f"/orders/user/{alice.id}"
    # every position: the user, the time, the order id and the MAC itself
    for at in range(0, len(cursor) - 1):
        response = await client.get(f"{url}?after={flipped(cursor, at)}", headers=alice.headers)
        assert response.status_code == 422, (at, response.text)
        assert "after" in response.json()["detail"]
    assert (await client.get(f"{url}?after={cursor}", headers=alice.headers)).status_code == 200


@pytest.mark.parametrize(
    "after", ["", "x", "!!!!", "%00", "AAAA", "A" * 43, "A" * 65, "%C3%A9" * 10, "a=b"]
)
async def test_a_malformed_cursor_is_422(client: Client, alice: Account, after: str) -> None:
    response = await client.get(f"/orders/user/{alice.id}?after={after}", headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


async def test_another_users_cursor_is_422(client: Client, alice: Account, bob: Account) -> None:
    """Signed with the user: bob's cursor does not position alice's list."""
    cursor = await a_cursor(client, bob)
    response = await client.get(f"/orders/user/{alice.id}?after={cursor}", headers=alice.headers)
    assert response.status_code == 422


async def test_offset_and_after_together_is_422(client: Client, alice: Account) -> None:
    cursor = await a_cursor(client, alice)
    url = f"/orders/user/{alice.id}?offset=0&after={cursor}"
    response = await client.get(url, headers=alice.headers)
    assert response.status_code == 422
    assert "offset" in response.json()["detail"]


async def test_another_users_list_is_403_with_a_cursor_and_filters(
    client: Client, alice: Account, bob: Account
) -> None:
    cursor = await a_cursor(client, bob)
    url = f"/orders/user/{bob.id}?after={cursor}&status=PAID"
    assert (await client.get(url, headers=alice.headers)).status_code == 403


async def test_openapi_documents_the_filters_the_cursor_and_the_link(client: Client) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/orders/user/{user_id}"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"limit", "offset", "after", "status", "created_from", "created_to"} <= names
    status = next(p for p in operation["parameters"] if p["name"] == "status")
    assert "OrderStatus" in str(status["schema"])
    assert set(schema["components"]["schemas"]["OrderStatus"]["enum"]) == {
        "PENDING",
        "PAID",
        "SHIPPED",
        "CANCELED",
    }
    assert "Link" in operation["responses"]["200"]["headers"]


async def test_every_shape_of_the_query_is_an_index_range_without_a_sort(
    alice: Account, settings: Settings
) -> None:
    """The plans (``just explain-orders`` prints them on 200,000 orders): each paging style,
    with and without the filters, reads ix_orders_user_id_created_at in its order: no Sort,
    no Seq Scan, so a deep keyset page costs what the first does."""
    newest = datetime.now(UTC)
    await insert_orders(
        settings,
        alice.id,
        20_000,
        newest=newest,
        step=timedelta(seconds=1),
        statuses=("PENDING", "PAID", "SHIPPED", "CANCELED"),
    )
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await conn.execute("ANALYZE orders")
        row = await conn.fetchrow(
            "SELECT created_at, id FROM orders WHERE user_id = $1"
            " ORDER BY created_at DESC, id DESC OFFSET 10000 LIMIT 1",
            alice.id,
        )
        assert row is not None
        deep = Position(row["created_at"], UUID(str(row["id"])))
        plans = {
            name: await plan(conn, statement, analyze=False)
            for name, statement in shapes(alice.id, deep, newest).items()
        }
    finally:
        await conn.close()
    problems = {name: plan_problems(text) for name, text in plans.items()}
    assert problems == {name: [] for name in plans}, plans
