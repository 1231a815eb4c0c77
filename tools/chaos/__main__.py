"""``python -m tools.chaos [--minutes N]``: run the stack under load and faults, check, report.

Exit status 0 when every check passed, 1 when one failed (the table says which), 2 when the
stack could not be started. The run's database, Redis keys and RabbitMQ names are removed
in every case; the processes' logs stay in ``.chaos/<run id>/`` when the run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from migrations.admin import migrate
from shared.settings import Settings
from tools.chaos import checks, load, report, schedule, status_events
from tools.chaos.stack import Stack, chaos_settings
from tools.harness.cleanup import remove_run
from tools.harness.names import ROOT

OUTPUT = ROOT / ".chaos"
SHOWN = 5  # failing ids or messages printed per check


@dataclass(frozen=True)
class Plan:
    minutes: float
    users: int
    seed: int
    redis_loss: bool
    converge_timeout_s: float
    output: Path


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(prog="just chaos", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="load and faults (2)")
    parser.add_argument("--users", type=int, default=6, help="virtual users (6)")
    parser.add_argument("--seed", type=int, default=None, help="for the schedule and the load")
    parser.add_argument(
        "--no-redis-loss",
        action="store_true",
        help="leave out Redis losing its data (for a build without the reconciler)",
    )
    parser.add_argument(
        "--converge-timeout",
        type=float,
        default=180.0,
        help="seconds to wait after the last fault for every order to be processed (180)",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT / "last.md")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 60 or not 1 <= args.users <= 64:
        parser.error("--minutes must be in (0, 60] and --users in [1, 64]")
    return Plan(
        minutes=float(args.minutes),
        users=int(args.users),
        seed=int(args.seed) if args.seed is not None else secrets.randbelow(1_000_000),
        redis_loss=not args.no_redis_loss,
        converge_timeout_s=float(args.converge_timeout),
        output=Path(args.output),
    )


async def run(plan: Plan, settings: Settings, logs: Path) -> int:
    stack = Stack.build(settings, logs)
    try:
        try:
            await stack.start()
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 2
        return await exercise(plan, stack)
    finally:
        stack.stop()
        ids: set[str] = set()
        with contextlib.suppress(Exception):
            ids = await checks.order_ids(settings.database_url)
        await remove_run(settings, ids)


async def exercise(plan: Plan, stack: Stack) -> int:
    tally = load.Tally()
    print(f"chaos: {plan.minutes:g} min, {plan.users} users, seed {plan.seed}", flush=True)
    async with status_events.listening(stack.settings) as collected:
        return await exercise_listened(plan, stack, tally, collected)


async def exercise_listened(
    plan: Plan,
    stack: Stack,
    tally: load.Tally,
    collected: status_events.Collected,
) -> int:
    url = stack.settings.database_url
    seconds = plan.minutes * 60
    started = time.monotonic()
    _, faults = await asyncio.gather(
        load.drive(stack.apis, plan.users, seconds, plan.seed, tally),
        schedule.run_faults(
            stack,
            seconds,
            plan.seed,
            lambda: checks.order_ids(url),
            redis_loss_share=0.4 if plan.redis_loss else None,
        ),
    )
    print(f"chaos: faults over after {faults.ended - started:.0f} s; converging", flush=True)
    converged = await checks.wait_converged(url, faults.ended, plan.converge_timeout_s)
    outcome = await checks.check(url, tally, stack.worker_logs(), converged)
    moved = status_events.judge(
        await status_events.drain(collected), await status_events.final_statuses(url)
    )
    failures = outcome.failures(tally) + moved.failures()
    line = (
        f"{plan.minutes:g} min of faults, {plan.users} virtual users, seed {plan.seed};"
        f" whole run {time.monotonic() - started:.0f} s"
        f"{'' if plan.redis_loss else '; without the Redis data loss'}."
    )
    text = report.render("Chaos run", line, tally, faults, outcome, moved)
    text += "\n" + ("**FAILED**: " + "; ".join(failures) if failures else "All checks passed.")
    print("\n" + text)
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    plan.output.write_text(text + "\n\n## Fault timeline\n\n" + "\n".join(faults.timeline) + "\n")
    for message in details(outcome, tally, faults, moved):
        print(message, file=sys.stderr)
    return 1 if failures else 0


def details(
    outcome: checks.Outcome,
    tally: load.Tally,
    faults: schedule.FaultLog,
    moved: status_events.StatusEvents,
) -> list[str]:
    """A few examples of each failure, for the person reading the logs."""
    found = []
    for name, items in (
        ("missing", outcome.missing),
        ("never processed", outcome.unprocessed),
        ("processed twice", outcome.twice),
        ("duplicate keys", outcome.duplicate_keys),
        ("5xx", tally.server_errors),
        ("404 for an order answered 201", tally.missing_reads),
        ("not restarted", faults.not_restarted),
        ("status change with two events", moved.doubled),
        ("status events not matching the order", moved.broken),
    ):
        if items:
            found.append(f"{name}: {items[:SHOWN]}")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    run_id = secrets.token_hex(4)
    settings = chaos_settings(run_id)
    logs = OUTPUT / run_id
    logs.mkdir(parents=True, exist_ok=True)
    status = 2
    try:
        migrate(settings.database_url)
        status = asyncio.run(run(plan, settings, logs))
    finally:
        if status == 0:
            shutil.rmtree(logs, ignore_errors=True)
        else:
            print(f"chaos: logs kept in {logs}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
