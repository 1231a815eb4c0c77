"""Helpers for order tests: create orders through the API as a client would, read or evict
their cached view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.db import asyncpg_dsn
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


# Orders straight into the database, in one statement: the n-th is ``step`` older than the
# (n-1)-th (all created in the same microsecond when ``step`` is zero), statuses in turn.
_INSERT_ORDERS = """
INSERT INTO orders (id, user_id, items, total_price, status, created_at, updated_at)
SELECT gen_random_uuid(), $1, '[{"name": "A", "quantity": 1, "price": "1.00"}]', 1.00,
       ($4::text[])[1 + n % cardinality($4::text[])]::order_status,
       $2::timestamptz - $3::interval * n, $2::timestamptz - $3::interval * n
FROM generate_series(0, $5 - 1) n
"""


async def insert_orders(
    settings: Settings,
    user_id: int,
    count: int,
    *,
    newest: datetime | None = None,
    step: timedelta = timedelta(0),
    statuses: tuple[str, ...] = ("PENDING",),
) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        start = newest or datetime.now(UTC)
        await conn.execute(_INSERT_ORDERS, user_id, start, step, list(statuses), count)
    finally:
        await conn.close()
