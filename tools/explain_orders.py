"""The list of a user's orders, every shape of its query: EXPLAIN (ANALYZE, BUFFERS).

``just explain-orders``: builds ``<database>_explain_<hex>`` from DATABASE_URL's server,
migrates it, gives one user 200,000 orders (the bench's deep user) among 1,000 others, and
prints the plan of each shape the slice runs (features.list_user_orders.queries
``page_statement``): the first page, offset 199,950, the keyset page after position 199,950,
and the filters with each paging style. Each plan should be a scan of
ix_orders_user_id_created_at with no Sort (``plan_problems`` says what is not;
tests/features/test_list_user_orders.py asserts it on the test database).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy import Select
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import ClauseElement

from features.list_user_orders.pages import OrderFilter, Position
from features.list_user_orders.queries import page_statement
from migrations.admin import in_scratch_database
from shared.db import asyncpg_dsn
from shared.orders.status import OrderStatus
from shared.settings import load_settings

INDEX = "ix_orders_user_id_created_at"
DEEP = 199_950
PAGE = 50


def shapes(user_id: int, deep: Position, newest: datetime) -> dict[str, Select[object]]:
    """Each shape of the page query, named; ``deep`` a position far down the user's list."""
    some = OrderFilter((OrderStatus.PAID, OrderStatus.CANCELED), None, None)
    window = OrderFilter((), newest - timedelta(days=1), newest - timedelta(hours=1))
    both = OrderFilter((OrderStatus.SHIPPED,), newest - timedelta(days=30), newest)
    limit = PAGE + 1  # the slice asks one more row: whether there is a next page
    return {
        "first page": page_statement(user_id, limit),
        f"offset {DEEP:,}": page_statement(user_id, limit, offset=DEEP),
        f"after position {DEEP:,}": page_statement(user_id, limit, after=deep),
        "status PAID or CANCELED": page_statement(user_id, limit, where=some),
        "status, after a position": page_statement(user_id, limit, after=deep, where=some),
        "created in a window": page_statement(user_id, limit, where=window),
        "window, offset 100": page_statement(user_id, limit, offset=100, where=window),
        "status and window, after": page_statement(user_id, limit, after=deep, where=both),
    }


def literal_sql(statement: ClauseElement) -> str:
    return str(
        statement.compile(
            dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
            compile_kwargs={"literal_binds": True},
        )
    )


async def plan(conn: asyncpg.Connection, statement: Select[object], analyze: bool) -> str:
    options = "ANALYZE, BUFFERS" if analyze else "COSTS"
    rows = await conn.fetch(f"EXPLAIN ({options}) {literal_sql(statement)}")
    return "\n".join(row[0] for row in rows)


def plan_problems(text: str) -> list[str]:
    """What keeps a plan from being the one intended: empty when it is."""
    problems = []
    if INDEX not in text or not ("Index Scan" in text or "Index Only Scan" in text):
        problems.append(f"not an index scan of {INDEX}")
    if "Sort" in text:
        problems.append("a Sort")
    if "Seq Scan" in text:
        problems.append("a Seq Scan")
    return problems


FILL = """
INSERT INTO users (email, password_hash)
SELECT 'explain-' || n || '@example.com', '\\x00'::bytea FROM generate_series(1, 1001) n;
INSERT INTO orders (id, user_id, items, total_price, status, created_at, updated_at)
SELECT gen_random_uuid(), CASE WHEN n <= 200000 THEN 1 ELSE 2 + n % 1000 END,
       '[{"name": "A", "quantity": 1, "price": "1.00"}]', 1.00,
       (enum_range(NULL::order_status))[1 + n % 4], now() - make_interval(secs => n),
       now() - make_interval(secs => n)
FROM generate_series(1, 300000) n;
VACUUM ANALYZE users, orders
"""


async def run(database_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        for fill in FILL.split(";"):
            await conn.execute(fill)
        row = await conn.fetchrow(
            "SELECT created_at, id, (SELECT max(created_at) FROM orders WHERE user_id = 1)"
            " AS newest FROM orders WHERE user_id = 1"
            " ORDER BY created_at DESC, id DESC OFFSET $1 LIMIT 1",
            DEEP - 1,
        )
        assert row is not None
        deep = Position(row["created_at"].astimezone(UTC), uuid.UUID(str(row["id"])))
        print(f"-- user 1: 200,000 orders; 1,000 users: 100 each; page of {PAGE}")
        for name, statement in shapes(1, deep, row["newest"]).items():
            text = await plan(conn, statement, analyze=True)
            verdict = "; ".join(plan_problems(text)) or "index range, no sort"
            print(f"\n== {name}: {verdict}\n{text}")
    finally:
        await conn.close()


def main() -> None:
    in_scratch_database(load_settings().database_url, run)


if __name__ == "__main__":
    main()
