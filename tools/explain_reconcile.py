"""The reconciler's claim on 200,000 orders: EXPLAIN (ANALYZE, BUFFERS), in a scratch database.

``just explain-reconcile`` (numbers for RELIABILITY.md). Builds ``<database>_explain_<hex>``
from DATABASE_URL's server, migrates it, fills it, prints the plans of the exact statement
the worker runs (``features.reconcile_orders.queries.claim_statement``), rolled back, and
drops the database.

Two cases: the steady state (everything processed but the last few seconds' orders: nothing
to do) and a backlog (1,000 orders whose jobs Redis lost: one batch of 500 claimed).
"""

from __future__ import annotations

import asyncpg

from features.reconcile_orders.queries import claim_statement
from migrations.admin import in_scratch_database
from shared.db import asyncpg_dsn
from shared.settings import load_settings
from tools.explain_orders import literal_sql

ORDERS = 200_000
FRESH = 20  # created in the last second, not processed yet: the steady state's only rows
LOST = 1_000  # old, event sent, never processed: what the reconciler exists for

FILL = """
INSERT INTO users (email, password_hash)
SELECT 'explain-' || n || '@example.com', '\\x00'::bytea FROM generate_series(1, 1000) n;
INSERT INTO orders (id, user_id, items, total_price, status, created_at, updated_at,
                    processed_at)
SELECT gen_random_uuid(), 1 + n % 1000, '[{"name": "A", "quantity": 1, "price": "1.00"}]',
       1.00, 'PENDING', now() - make_interval(secs => 60 + n),
       now() - make_interval(secs => 60 + n),
       CASE WHEN n <= $1 THEN NULL ELSE now() - make_interval(secs => 58 + n) END
FROM generate_series(1, $2) n;
INSERT INTO outbox (id, event_type, order_id, payload, created_at, sent_at)
SELECT gen_random_uuid(), 'new_order', id, '\\x7b7d'::bytea, created_at, created_at
FROM orders;
"""


async def explain(dsn: str, sql: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        transaction = conn.transaction()
        await transaction.start()
        try:
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
    return "\n".join(row[0] for row in rows)


async def fill(dsn: str, unprocessed: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE users, orders, outbox RESTART IDENTITY CASCADE")
        for statement in FILL.split(";"):
            if not statement.strip():
                continue
            if "$1" in statement:
                await conn.execute(statement, unprocessed, ORDERS)
            else:
                await conn.execute(statement)
        await conn.execute("VACUUM ANALYZE users, orders, outbox")
    finally:
        await conn.close()


async def run(database_url: str) -> None:
    settings = load_settings()
    sql = literal_sql(claim_statement(settings))
    dsn = asyncpg_dsn(database_url)
    print(f"-- {ORDERS:,} orders; RECONCILE_AFTER_S={settings.reconcile_after_s}")
    print(f"-- batch {settings.reconcile_batch}\n{sql}\n")
    # Steady state: the FRESH newest are unprocessed but younger than RECONCILE_AFTER_S.
    await fill(dsn, FRESH)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "UPDATE orders SET created_at = now() WHERE processed_at IS NULL; ANALYZE orders"
        )
    finally:
        await conn.close()
    print(f"== steady state: {FRESH} unprocessed orders, all younger than RECONCILE_AFTER_S")
    print(await explain(dsn, sql))
    await fill(dsn, LOST)
    print(f"\n== backlog: {LOST:,} orders whose jobs were lost (older than RECONCILE_AFTER_S)")
    print(await explain(dsn, sql))


def main() -> None:
    in_scratch_database(load_settings().database_url, run)


if __name__ == "__main__":
    main()
