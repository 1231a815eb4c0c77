"""The run's data: users registered through the API, orders written straight to the table, and
the warm pool cached through the API.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx

from features.list_user_orders.pages import Position, cursor_key, encode_cursor
from shared.db import asyncpg_dsn
from tools.bench.stack import Stack

PASSWORD = "bench-password-123"
ORDER_ITEMS = [
    {"name": "Item 1", "quantity": 2, "price": "100.50"},
    {"name": "Item 2", "quantity": 1, "price": "250.00"},
]
ORDER_TOTAL = Decimal("451.00")
WARM_ORDERS = 1000
LIST_ORDERS = 50
# The deep user (issue 20): the keyset page after DEEP_AT of DEEP_ORDERS against the first.
DEEP_ORDERS = 200_000
DEEP_AT = 199_950
# Pools that are walked once (cold GET, PENDING -> PAID) are sized for this many requests a
# second; a run that outpaces them says so under the table.
POOL_RPS = 2500


@dataclass(frozen=True)
class Seed:
    tokens: dict[str, str]
    user_ids: dict[str, int]
    warm: list[uuid.UUID]
    cold: list[uuid.UUID]
    cold_warmup: list[uuid.UUID]
    pending: list[uuid.UUID]
    pending_warmup: list[uuid.UUID]
    deep_after: str  # the `after` cursor of the deep user's position DEEP_AT


def client_header(n: int) -> dict[str, str]:
    """A client address for requests the bench sends itself (198.18.0.0/15: benchmarking)."""
    return {"X-Forwarded-For": f"198.19.{n // 250 % 250}.{n % 250 + 1}"}


async def register_users(api: str, names: Sequence[str]) -> tuple[dict[str, str], dict[str, int]]:
    """Register and log in through the API, as clients do (bcrypt at the configured cost)."""
    async with httpx.AsyncClient(base_url=api, timeout=30.0) as client:

        async def one(n: int, name: str) -> tuple[str, int, str]:
            email = f"{name}@bench.example"
            reply = await client.post(
                "/register", json={"email": email, "password": PASSWORD}, headers=client_header(n)
            )
            reply.raise_for_status()
            login = await client.post(
                "/token", data={"username": email, "password": PASSWORD}, headers=client_header(n)
            )
            login.raise_for_status()
            return name, int(reply.json()["id"]), str(login.json()["access_token"])

        done = await asyncio.gather(*(one(n, name) for n, name in enumerate(names)))
    return {name: tok for name, _, tok in done}, {name: uid for name, uid, _ in done}


INSERT_ORDERS = """
INSERT INTO orders (id, user_id, items, total_price, status, created_at, updated_at, processed_at)
SELECT id, $2, $3::jsonb, $4, $5::order_status,
       now() - make_interval(secs => n), now() - make_interval(secs => n), now()
FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n)
"""


async def insert_orders(
    conn: asyncpg.Connection, user_id: int, count: int, status: str
) -> list[uuid.UUID]:
    """Orders written straight to the table, already processed: no events, no worker noise."""
    ids = [uuid.uuid4() for _ in range(count)]
    items = json.dumps(ORDER_ITEMS)
    for at in range(0, count, 20_000):
        await conn.execute(
            INSERT_ORDERS, ids[at : at + 20_000], user_id, items, ORDER_TOTAL, status
        )
    return ids


# One statement: 200,000 rows in a couple of seconds, a second apart, newest first.
INSERT_DEEP = """
INSERT INTO orders (id, user_id, items, total_price, status, created_at, updated_at, processed_at)
SELECT gen_random_uuid(), $1, $2::jsonb, $3, 'PAID', now() - make_interval(secs => n),
       now() - make_interval(secs => n), now()
FROM generate_series(1, $4) n
"""


async def seed_deep(conn: asyncpg.Connection, user_id: int, secret: str) -> str:
    """The deep user's orders, and the cursor a client walking its list would hold after
    DEEP_AT of them (made as the API makes it: the same secret, the same position)."""
    await conn.execute(INSERT_DEEP, user_id, json.dumps(ORDER_ITEMS), ORDER_TOTAL, DEEP_ORDERS)
    row = await conn.fetchrow(
        "SELECT created_at, id FROM orders WHERE user_id = $1"
        " ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1",
        user_id,
        DEEP_AT - 1,
    )
    assert row is not None
    position = Position(row["created_at"], uuid.UUID(str(row["id"])))
    return encode_cursor(cursor_key(secret), user_id, position)


async def seed(stack: Stack, tokens: dict[str, str], user_ids: dict[str, int]) -> Seed:
    plan, load_user = stack.plan, user_ids["load"]
    pool = POOL_RPS * plan.duration + 500
    warmup_pool = POOL_RPS * plan.warmup + 200
    conn = await asyncpg.connect(asyncpg_dsn(stack.settings.database_url))
    try:
        warm = await insert_orders(conn, load_user, WARM_ORDERS, "PAID")
        cold = await insert_orders(conn, load_user, pool, "PAID")
        cold_warmup = await insert_orders(conn, load_user, warmup_pool, "PAID")
        pending = await insert_orders(conn, load_user, pool, "PENDING")
        pending_warmup = await insert_orders(conn, load_user, warmup_pool, "PENDING")
        await insert_orders(conn, user_ids["list"], LIST_ORDERS, "PAID")
        deep_after = await seed_deep(conn, user_ids["deep"], stack.settings.jwt_secret)
        # Now, rather than autovacuum in the middle of a scenario.
        await conn.execute("VACUUM ANALYZE orders")
    finally:
        await conn.close()
    # Fill the cache for the warm pool through the API itself (each first GET is a MISS).
    headers = {"Authorization": f"Bearer {tokens['load']}"}
    async with httpx.AsyncClient(base_url=stack.api, timeout=30.0, headers=headers) as client:
        gate = asyncio.Semaphore(16)

        async def warm_one(n: int, order_id: uuid.UUID) -> None:
            async with gate:
                reply = await client.get(f"/orders/{order_id}", headers=client_header(n))
                reply.raise_for_status()

        await asyncio.gather(*(warm_one(n, i) for n, i in enumerate(warm)))
        check = await client.get(f"/orders/{warm[0]}", headers=client_header(0))
        if check.headers.get("X-Cache") != "HIT":
            raise RuntimeError("the warm pool is not cached after warming it")
    return Seed(tokens, user_ids, warm, cold, cold_warmup, pending, pending_warmup, deep_after)


def write_ids(directory: Path, name: str, ids: Sequence[uuid.UUID]) -> Path:
    path = directory / f"{name}.ids"
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


def write_file(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path
