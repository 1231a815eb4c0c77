"""The plan PostgreSQL picks for a statement when a table's statistics look as in production.

Partial indexes whose rows are transient (``processed_at IS NULL``, ``sent_at IS NULL``) look
empty to ANALYZE, so the planner is tempted to scan one whole where the primary key finds the
row; these tests fill the table the way production sees it, ANALYZE, and read the plan, all in
a transaction rolled back (rows and statistics both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ClauseElement, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tools.explain_orders import literal_sql

NEW_USER = (
    "INSERT INTO users (email, password_hash)"
    " VALUES ('plan-' || gen_random_uuid() || '@example.com', '\\x00') RETURNING id"
)


async def plan_after_filling(
    engine: AsyncEngine, fill: str, statement: ClauseElement, **params: Any
) -> str:
    """EXPLAIN of ``statement`` (its parameters bound) once ``fill`` ran and the tables were
    analyzed; ``fill`` gets ``:user``, a new user's id, and ``params``."""
    async with engine.connect() as conn, conn.begin() as transaction:
        user = await conn.scalar(text(NEW_USER))
        values: Mapping[str, Any] = {"user": user, **params}
        await conn.execute(text(fill), values)
        await conn.execute(text("ANALYZE users, orders, outbox"))
        rows = await conn.execute(text(f"EXPLAIN {literal_sql(statement)}"))
        plan = "\n".join(row[0] for row in rows)
        await transaction.rollback()
    return plan
