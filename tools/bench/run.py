"""`just bench`: start the stack on loopback, load it with wrk, print one table.

The run is isolated from development data: its own database (created by the migrations and
dropped afterwards), its own Redis prefix, RabbitMQ exchange/queues and arq queue, all named
after a random run id and removed at the end. It starts the API (one process per core), one
consumer and one worker, plus the *ceiling* (tools/bench/ceiling.py: a bare ASGI app that verifies
the same JWT and returns one Redis value) and *litestar_minimal* (tools/bench/minimal.py: the same
with Litestar and the API's JWT auth) served the same way, and reports every scenario's
throughput as a fraction of the ceiling's, and the CPU each POSTed order costs.

    python -m tools.bench.run            # ~3 minutes: 10 s per scenario; fails on errors only
    python -m tools.bench.run --strict   # the same, and fails on a missed target too
    python -m tools.bench.run --smoke    # < 1 minute: fails on errors only, not on targets

A complete run exits 0 and marks each missed target **MISS** in its table; an error (a failed
request, orders left unprocessed) always makes it exit 1.

The table goes to stdout and to ``.bench/last.md``; BENCHMARKS.md explains each scenario.

This module is the entry point; the work is in stack.py (the processes, on the harness),
seed.py (users and orders), scenarios.py (the wrk loads), cpu.py (CPU time per process group)
and report.py (the markdown tables).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec
from sqlalchemy.engine import make_url

from migrations.admin import migrate
from shared.settings import Settings
from tools.bench.report import add_notes, render
from tools.bench.scenarios import LUA, QUIET, SCENARIOS, Report, Scenarios
from tools.bench.seed import (
    DEEP_ORDERS,
    LIST_ORDERS,
    WARM_ORDERS,
    Seed,
    register_users,
    seed,
    write_ids,
)
from tools.bench.stack import (
    BENCH_DIR,
    Plan,
    Stack,
    bench_settings,
    children,
    evented_orders,
    memory_tree,
    scratch,
)
from tools.harness.cleanup import remove_run
from tools.harness.names import environment
from tools.harness.otlp import OtlpReceiver


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--duration", type=int, default=None, help="whole seconds per scenario (10; smoke: 2)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="short CI run: 2 s per scenario, 100-order drain; fails on errors, not on targets",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 on a missed target too (by default only errors do; misses are marked)",
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="API processes (one per core)"
    )
    parser.add_argument(
        "--token-connections", type=int, default=4, help="logins in flight in the /token load"
    )
    parser.add_argument(
        "--drain-orders", type=int, default=None, help="orders in the drain (1000; smoke: 100)"
    )
    parser.add_argument(
        "--app",
        default="app:create_app",
        help="the API's factory (module:function)",
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated subset of: {', '.join(SCENARIOS)}"
        " (the ceiling and litestar_minimal always run)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="on a shared machine: wait up to this many seconds before each scenario for the"
        f" cores to be under {QUIET * 100:.0f}%% busy (0: do not wait, only report)",
    )
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "last.md")
    parser.add_argument(
        "--hold",
        action="store_true",
        help="start and seed the stack, write .bench/hold.json (urls, pids, tokens, id files)"
        " and .bench/hold.env (its settings), run nothing and wait for Ctrl-C: for profiling",
    )
    parser.add_argument(
        "--traced",
        action="store_true",
        help="trace every order (OTLP/HTTP to a receiver in this process that counts and drops"
        " the spans): what tracing costs, against a run without it",
    )
    args = parser.parse_args(argv)
    only = frozenset(name for name in str(args.only).split(",") if name)
    if unknown := only - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    smoke = bool(args.smoke)
    if smoke and args.strict:
        parser.error("--smoke fails on errors only: it takes no --strict")
    drain = args.drain_orders if args.drain_orders is not None else (100 if smoke else 1000)
    return Plan(
        duration=max(1, args.duration if args.duration is not None else (2 if smoke else 10)),
        warmup=1,
        connections=int(args.connections),
        threads=int(args.threads),
        workers=int(args.workers),
        token_connections=int(args.token_connections),
        drain_orders=int(drain),
        smoke=smoke,
        strict=bool(args.strict),
        app=str(args.app),
        only=only or frozenset(SCENARIOS),
        output=Path(args.output),
        hold=bool(args.hold),
        quiet_wait=float(args.quiet_wait),
        traced=bool(args.traced),
    )


async def hold(stack: Stack, data: Seed) -> None:
    """Keep the seeded stack up for profiling by hand; Ctrl-C (or SIGTERM) tears it down."""
    info = {
        "api": stack.api,
        "ceiling": stack.ceiling,
        "litestar_minimal": stack.minimal,
        "pids": {name: [p.pid, *children(p.pid)] for name, p in stack.procs.items()},
        "tokens": data.tokens,
        "user_ids": data.user_ids,
        "ids": {
            "warm": str(write_ids(BENCH_DIR, "warm", data.warm)),
            "cold": str(write_ids(BENCH_DIR, "cold", data.cold)),
            "pending": str(write_ids(BENCH_DIR, "pending", data.pending)),
        },
        "lua": str(LUA),
        "database_url": stack.settings.database_url,
        "redis_prefix": stack.settings.redis_prefix,
    }
    (BENCH_DIR / "hold.json").write_text(json.dumps(info, indent=2))
    # The run's settings as a .env file, to start more servers against the same data.
    env = environment(stack.settings)
    names = [name.upper() for name in Settings.__struct_fields__ if name.upper() in env]
    (BENCH_DIR / "hold.env").write_text("".join(f"{n}={env[n]}\n" for n in names))
    print(f"holding; see {BENCH_DIR / 'hold.json'}; Ctrl-C to stop", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def bench(stack: Stack, report: Report) -> None:
    plan = stack.plan
    stack.start_services()
    await stack.wait_ready(f"{stack.api}/ready", stack.procs["api"])
    rounds = stack.settings.bcrypt_rounds
    print(f"stack ready on {stack.api}; registering users (bcrypt rounds {rounds})", flush=True)
    tokens, user_ids = await register_users(stack.api, ["load", "list", "drain", "post", "deep"])
    data = await seed(stack, tokens, user_ids)
    key = f"{stack.settings.redis_prefix}order:{data.warm[0]}"
    stack.start_ceiling(key)
    stack.start_minimal(key)
    await stack.wait_ready(f"{stack.ceiling}/", stack.procs["ceiling"], expect=401)
    minimal = stack.procs["litestar_minimal"]
    await stack.wait_ready(f"{stack.minimal}/orders/{data.warm[0]}", minimal, expect=401)
    seeded = len(data.cold) + len(data.cold_warmup) + len(data.pending) + len(data.pending_warmup)
    print(
        f"seeded {seeded + WARM_ORDERS + LIST_ORDERS + DEEP_ORDERS:,} orders;"
        f" scenarios of {plan.duration} s after {plan.warmup} s warm-up",
        flush=True,
    )
    if plan.hold:
        await hold(stack, data)
        return
    await Scenarios(stack, report, data).run()
    api = memory_tree(stack.procs["api"])
    report.api_rss_after = [m for m in api if " process " in m.process] or api[:1]
    report.memory += api
    for name in ("consumer", "worker"):
        report.memory += memory_tree(stack.procs[name])
    add_notes(report, rounds)


class Exported:
    """What ``--traced`` received: counted, then dropped."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0

    def __call__(self, body: bytes) -> None:
        self.requests += 1
        self.bytes += len(body)


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk (`just bench` does that)", file=sys.stderr)
        return 2
    run_id = secrets.token_hex(4)
    settings = bench_settings(run_id)
    exported = Exported()
    sink = None
    if plan.traced:
        sink = OtlpReceiver(exported)
        settings = msgspec.structs.replace(
            settings,
            otel_exporter_otlp_endpoint=sink.url,
            otel_traces_sampler="parentbased_always_on",
            otel_sdk_disabled=False,
        )
    logs = BENCH_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    report = Report(plan)
    database = make_url(settings.database_url).database
    print(f"bench run {run_id}: database {database}, logs in {logs}", flush=True)
    migrate(settings.database_url)
    with scratch() as work:
        stack = Stack(plan, settings, logs, work)
        try:
            asyncio.run(bench(stack, report))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            stack.stop()
            if sink is not None:
                sink.close()
                print(
                    f"traced: {exported.requests:,} exports, {exported.bytes:,} bytes", flush=True
                )
            order_ids = asyncio.run(evented_orders(settings))
            asyncio.run(remove_run(settings, {str(order_id) for order_id in order_ids}))
    if plan.hold:
        return 0
    text, outcome = render(report)
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    plan.output.write_text(text)
    print(f"\n{text}\nwritten to {plan.output}")
    return outcome.exit_status(plan.strict)


if __name__ == "__main__":
    sys.exit(main())
