"""The run's table, in Markdown (the same text goes into RELIABILITY.md)."""

from __future__ import annotations

from collections.abc import Iterable

from tools.chaos.checks import Outcome
from tools.chaos.load import MIX, Tally
from tools.chaos.schedule import FaultLog
from tools.chaos.status_events import StatusEvents

OPS = (*MIX, "create-replay")


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def status_order(status: str) -> tuple[int, str]:
    return (0, status) if status.isdigit() else (1, status)


def requests_table(tally: Tally) -> list[str]:
    statuses = sorted(tally.by_status, key=status_order)
    rows = []
    for op in OPS:
        counts = [tally.by_op.get((op, s), 0) for s in statuses]
        if any(counts):
            rows.append([op, *counts, sum(counts)])
    totals = [tally.by_status[s] for s in statuses]
    rows.append(["**all**", *totals, sum(totals)])
    return table(["request", *statuses, "total"], rows)


def render(
    title: str,
    settings_line: str,
    tally: Tally,
    faults: FaultLog,
    outcome: Outcome,
    moved: StatusEvents,
) -> str:
    converged = "did not" if outcome.converged_s is None else f"{outcome.converged_s:.1f} s"
    lines = [f"### {title}", "", settings_line, "", "**Requests by status**", ""]
    lines += requests_table(tally)
    lines += ["", "**Faults by kind**", ""]
    lines += table(["fault", "count"], sorted(faults.counts.items()))
    lines += ["", "**Orders**", ""]
    lines += table(
        ["", "count"],
        [
            ["orders in the database (created)", outcome.orders_in_db],
            ["distinct orders answered 201", outcome.answered_201],
            ["processed (`processed_at` set)", outcome.processed],
            ["**lost** (answered 201 but missing, or never processed)", outcome.lost],
            ["**processed twice** (two `Order <id> processed` lines)", len(outcome.twice)],
            [
                "processed, no `processed` line (the run died or lost its link after the commit)",
                outcome.unlogged,
            ],
            ["job reruns that found the order done (`was already processed`)", outcome.reruns],
            ["Idempotency-Key replays sent on purpose", tally.replays],
            ["Idempotency-Keys that made a second order", len(outcome.duplicate_keys)],
            ["keyed creates given up after every retry failed", tally.keys_abandoned],
            ["5xx other than 503", len(tally.server_errors)],
            ["outbox rows unsent at the end", outcome.outbox_unsent],
            ["Redis keys of this run deleted by the data loss", faults.redis_keys_lost],
            ["time to converge after the last fault", converged],
            [
                "`order_status_changed` events received (redelivered copies)",
                f"{moved.received} ({moved.redelivered})",
            ],
            ["orders whose status moved", moved.orders_changed],
            ["**status changes with two events**", len(moved.doubled)],
            ["**orders whose events do not match their status**", len(moved.broken)],
        ],
    )
    return "\n".join(lines) + "\n"
