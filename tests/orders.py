"""Helpers for order tests: create orders through the API as a client would, read or evict
their cached view."""

from __future__ import annotations

from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.orders.cache import OrderCache
from shared.settings import Settings
from tests.accounts import Account

Client = AsyncTestClient[Litestar]

ONE_ITEM = {"items": [{"name": "Item 1", "quantity": 2, "price": "100.50"}]}


async def create_order(
    client: httpx.AsyncClient,  # the test client (a subclass) or one of a live API
    account: Account,
    body: dict[str, Any] | None = None,
    **headers: str,
) -> dict[str, Any]:
    response = await client.post(
        "/orders", json=body or ONE_ITEM, headers={**account.headers, **headers}
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


async def evict(settings: Settings, order_id: str) -> None:
    redis = Redis.from_url(settings.redis_url)
    try:
        await redis.delete(f"{settings.redis_prefix}order:{order_id}")
    finally:
        await redis.aclose()


def order_cache(settings: Settings, redis: Redis) -> OrderCache:
    return OrderCache(redis, settings.redis_prefix, settings.cache_ttl_seconds)
