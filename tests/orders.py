"""Helpers for order tests: create orders through the API as a client would."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.conftest import Account

Client = AsyncTestClient[Litestar]

ONE_ITEM = {"items": [{"name": "Item 1", "quantity": 2, "price": "100.50"}]}


async def create_order(
    client: Client, account: Account, body: dict[str, Any] | None = None, **headers: str
) -> dict[str, Any]:
    response = await client.post(
        "/orders", json=body or ONE_ITEM, headers={**account.headers, **headers}
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order
