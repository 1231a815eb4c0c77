"""After the faults: wait (bounded) for the pipeline to settle, then check what it did.

"Processed" means the order's ``processed_at`` is set. "Processed twice" means more than one
job run *changed* the order: ``process_order`` logs ``Order <id> processed`` only when its
conditional UPDATE (``WHERE processed_at IS NULL``) hit the row, so two such lines for one
id, in any worker's logs, would be two effective runs. Reruns that found the order done log
``was already processed`` and are counted apart (harmless by design). A run that committed
but never learned it (killed after the commit, or its link cut or stalled before the commit's
answer came back) leaves an order processed with no line, and its retry logs ``was already
processed``: counted as "processed, no line", not as a failure.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from shared.db import asyncpg_dsn
from tools.chaos.load import Tally

PROCESSED = re.compile(
    r"\bOrder ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) processed\b"
)
ALREADY = re.compile(r"\bOrder ([0-9a-f-]{36}) was already processed\b")
POLL_S = 1.0


async def connect(database_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)


async def order_ids(database_url: str) -> set[str]:
    conn = await connect(database_url)
    try:
        return {str(r["id"]) for r in await conn.fetch("SELECT id FROM orders")}
    finally:
        await conn.close()


async def pending(conn: asyncpg.Connection) -> tuple[int, int]:
    """(orders not processed, outbox rows not sent)."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM orders WHERE processed_at IS NULL) AS orders,"
        " (SELECT count(*) FROM outbox WHERE sent_at IS NULL) AS outbox"
    )
    return int(row["orders"]), int(row["outbox"])


async def wait_converged(database_url: str, since: float, timeout_s: float) -> float | None:
    """Seconds from ``since`` (the end of the last fault) until every order is processed and
    the outbox is empty; ``None`` if that did not happen within ``timeout_s``."""
    conn = await connect(database_url)
    try:
        while True:
            if await pending(conn) == (0, 0):
                return time.monotonic() - since
            if time.monotonic() - since > timeout_s:
                return None
            await asyncio.sleep(POLL_S)
    finally:
        await conn.close()


@dataclass
class Outcome:
    converged_s: float | None
    orders_in_db: int = 0
    answered_201: int = 0
    processed: int = 0
    missing: list[str] = field(default_factory=list)  # answered 201, not in the database
    unprocessed: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    unlogged: int = 0
    reruns: int = 0  # "was already processed" lines
    duplicate_keys: list[str] = field(default_factory=list)
    outbox_unsent: int = 0

    @property
    def lost(self) -> int:
        return len(self.missing) + len(self.unprocessed)

    def failures(self, tally: Tally) -> list[str]:
        """Every check that failed, as a sentence; empty when the run passed."""
        found = ["the pipeline did not converge in time"] if self.converged_s is None else []
        counts = (
            (len(self.missing), "orders answered 201 are not in the database"),
            (len(self.unprocessed), "orders were never processed"),
            (len(self.twice), "orders were processed twice"),
            (len(self.duplicate_keys), "Idempotency-Keys made a second order"),
            (self.outbox_unsent, "outbox rows were never sent"),
            (len(tally.server_errors), "responses were 5xx other than 503"),
            (len(tally.missing_reads), "GETs of an order answered 201 were 404"),
        )
        return found + [f"{n} {what}" for n, what in counts if n]


def log_counts(logs: list[Path]) -> tuple[Counter[str], int]:
    """``Order <id> processed`` lines per order, and the number of reruns, over all logs."""
    processed: Counter[str] = Counter()
    reruns = 0
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if match := PROCESSED.search(line):
                processed[match.group(1)] += 1
            elif ALREADY.search(line):
                reruns += 1
    return processed, reruns


async def check(
    database_url: str, tally: Tally, worker_logs: list[Path], converged_s: float | None
) -> Outcome:
    outcome = Outcome(converged_s)
    conn = await connect(database_url)
    try:
        rows = await conn.fetch("SELECT id, processed_at FROM orders")
        keys = await conn.fetch(
            "SELECT user_id, idempotency_key FROM orders WHERE idempotency_key IS NOT NULL"
            " GROUP BY 1, 2 HAVING count(*) > 1"
        )
        outcome.outbox_unsent = (await pending(conn))[1]
    finally:
        await conn.close()
    processed_at = {str(r["id"]): r["processed_at"] for r in rows}
    lines, outcome.reruns = log_counts(worker_logs)
    outcome.orders_in_db = len(processed_at)
    outcome.answered_201 = len(tally.created)
    outcome.missing = sorted(set(tally.created) - set(processed_at))
    outcome.unprocessed = sorted(i for i, at in processed_at.items() if at is None)
    outcome.processed = sum(1 for at in processed_at.values() if at is not None)
    outcome.twice = sorted(i for i, n in lines.items() if n > 1)
    outcome.unlogged = sum(1 for i, at in processed_at.items() if at is not None and not lines[i])
    outcome.duplicate_keys = [f"user {r['user_id']} key {r['idempotency_key']}" for r in keys]
    outcome.duplicate_keys += [
        f"user {user} key {key}: {sorted(ids)}"
        for (user, key), ids in tally.key_answers.items()
        if len(ids) > 1
    ]
    return outcome
