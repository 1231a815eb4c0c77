"""``python -m tools.bench.sse``: open event streams on one API process, what they cost.

One API process (uvicorn, one worker) and the consumer that feeds the event logs, on the
run's own names (tools/harness), removed afterwards. ``--users`` users hold
``--per-user`` streams each (1,000 by default: 200 × 5, the per-user limit), read by a raw
asyncio client (an httpx client per stream would cost the 2-core machine more CPU than
the server). Measured:

- the API's RSS before the streams and with them open → memory per stream;
- the API's CPU while the streams are idle for ``--idle`` seconds (keepalives only);
- ``--rate`` orders a second (POST /orders, users in turn) for ``--seconds``: from each POST's
  sending (before its commit) to the last of its owner's streams receiving its
  ``order_created`` (p50, p99, max), and how many never arrived.

The table goes to stdout and ``.bench/sse.md``; BENCHMARKS.md ("Live order events") explains it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aio_pika
import httpx
import msgspec

from migrations.admin import migrate
from shared.messaging.events import NEW_ORDER
from shared.settings import Settings
from tools.bench.stack import BENCH_DIR, bench_settings
from tools.harness.cleanup import remove_run
from tools.harness.names import environment
from tools.harness.processes import Proc, answers, free_port, module_argv, start, uvicorn_argv

ORDER = {"items": [{"name": "Item", "quantity": 1, "price": "1.00"}]}
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Plan:
    users: int
    per_user: int
    rate: float
    seconds: float
    idle: float
    output: Path


@dataclass
class Streams:
    """Every open stream's reader; ``arrived[order_id]`` lists receipt times."""

    arrived: dict[str, list[float]] = field(default_factory=dict)
    appended: dict[str, float] = field(default_factory=dict)  # from the entry id (Redis time)
    opened: int = 0
    failed: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def read_stream(port: int, token: str, streams: Streams, ready: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        "GET /orders/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    )
    writer.write(request.encode())
    status = await reader.readline()
    if b" 200 " not in status:
        streams.failed += 1
        ready.set()
        writer.close()
        return
    streams.opened += 1
    ready.set()
    entry = 0.0
    try:
        while line := await reader.readline():
            if line.startswith(b"id: "):
                entry = int(line[4:].split(b"-")[0]) / 1000
            elif line.startswith(b"data: {") and b'"id":"' in line:
                order_id = line.split(b'"id":"', 1)[1][:36].decode()
                streams.arrived.setdefault(order_id, []).append(time.time())
                streams.appended[order_id] = entry
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def register(client: httpx.AsyncClient, count: int) -> list[str]:
    tokens = []
    for _ in range(count):
        email = f"sse-{secrets.token_hex(6)}@example.com"
        password = secrets.token_urlsafe(12)
        created = await client.post("/register", json={"email": email, "password": password})
        created.raise_for_status()
        issued = await client.post("/token", data={"username": email, "password": password})
        issued.raise_for_status()
        tokens.append(issued.json()["access_token"])
    return tokens


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@contextlib.asynccontextmanager
async def on_the_bus(settings: Settings) -> AsyncIterator[dict[str, float]]:
    """When each order's ``new_order`` reached a queue of our own (classic, bound like the
    consumer's): the relay and the broker's share of the delay."""
    seen: dict[str, float] = {}
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            settings.rabbitmq_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=NEW_ORDER)

        async def note(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            seen[str(msgspec.json.decode(message.body)["order_id"])] = time.time()

        await queue.consume(note, no_ack=True)
        yield seen


@dataclass
class OrderLoad:
    """POST /orders at the plan's rate, users in turn, and when each one happened."""

    sent: dict[str, float] = field(default_factory=dict)  # the client's clock, before sending
    committed: dict[str, float] = field(default_factory=dict)  # the 201 back (after the commit)
    created: dict[str, float] = field(default_factory=dict)  # created_at: the API's, pre-commit
    refused: int = 0

    async def post(self, client: httpx.AsyncClient, token: str) -> None:
        at = time.time()
        answer = await client.post(
            "/orders", json=ORDER, headers={"Authorization": f"Bearer {token}"}
        )
        if answer.status_code != 201:
            self.refused += 1
            return
        order = answer.json()
        self.sent[order["id"]] = at
        self.committed[order["id"]] = time.time()
        stamp = order["created_at"].replace("Z", "+00:00")
        self.created[order["id"]] = datetime.fromisoformat(stamp).timestamp()

    async def drive(self, client: httpx.AsyncClient, tokens: list[str], plan: Plan) -> None:
        started = time.monotonic()
        posts = []
        for n in range(int(plan.rate * plan.seconds)):
            await asyncio.sleep(max(0.0, started + n / plan.rate - time.monotonic()))
            posts.append(asyncio.create_task(self.post(client, tokens[n % len(tokens)])))
        await asyncio.gather(*posts)


def spread(values_ms: list[float]) -> str:
    """p50 / p99 of ``values_ms``."""
    if not values_ms:
        return "none"
    return f"{statistics.median(values_ms):.0f} ms / {percentile(values_ms, 0.99):.0f} ms"


async def measure(
    plan: Plan, settings: Settings, port: int, api: Proc, consumer: Proc
) -> list[tuple[str, str]]:
    base = f"http://127.0.0.1:{port}"
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        on_the_bus(settings) as bus_seen,
    ):
        tokens = await register(client, plan.users)
        await asyncio.sleep(1)
        rss_before = rss_mib(api.pid)
        streams = Streams()
        for token in tokens:
            for _ in range(plan.per_user):
                ready = asyncio.Event()
                streams.tasks.append(asyncio.create_task(read_stream(port, token, streams, ready)))
                await ready.wait()
        await asyncio.sleep(2)
        rss_after = rss_mib(api.pid)
        cpu_start, wall_start = cpu_seconds(api.pid), time.monotonic()
        await asyncio.sleep(plan.idle)
        idle_share = (cpu_seconds(api.pid) - cpu_start) / (time.monotonic() - wall_start)
        load = OrderLoad()
        started = time.monotonic()
        cpu_load = cpu_seconds(api.pid)
        consumer_cpu = cpu_seconds(consumer.pid)
        await load.drive(client, tokens, plan)
        load_s = time.monotonic() - started
        await asyncio.sleep(3)  # the last ones arrive
        load_cpu = (cpu_seconds(api.pid) - cpu_load) / (time.monotonic() - started)
        feed_cpu = (cpu_seconds(consumer.pid) - consumer_cpu) / (time.monotonic() - started)
        for task in streams.tasks:
            task.cancel()
        await asyncio.gather(*streams.tasks, return_exceptions=True)
    sent, committed, created = load.sent, load.committed, load.created
    total = len(load.sent) + load.refused
    delays_ms, after_answer_ms, short = [], [], 0
    for order_id, at in sent.items():
        got = streams.arrived.get(order_id, [])
        if len(got) < plan.per_user:
            short += 1
        if got:
            delays_ms.append((max(got) - at) * 1000)
            after_answer_ms.append((max(got) - committed[order_id]) * 1000)
    appended = streams.appended
    per_stream_kib = (rss_after - rss_before) * 1024 / max(streams.opened, 1)
    return [
        ("streams open (refused)", f"{streams.opened} ({streams.failed})"),
        ("API RSS before → with the streams", f"{rss_before:.0f} → {rss_after:.0f} MiB"),
        ("memory per stream", f"{per_stream_kib:.0f} KiB"),
        (f"API CPU, streams idle {plan.idle:g} s", f"{idle_share * 100:.1f} % of a core"),
        (f"orders at {plan.rate:g}/s for {load_s:.0f} s (201)", f"{total} ({len(sent)})"),
        ("API CPU during that load (the POSTs included)", f"{load_cpu * 100:.0f} % of a core"),
        ("consumer CPU during that load (jobs and feed)", f"{feed_cpu * 100:.0f} % of a core"),
        ("POST sent → the last of the owner's streams: p50 / p99", spread(delays_ms)),
        ("POST round trip: p50 / p99", spread([(committed[i] - sent[i]) * 1000 for i in sent])),
        ("the 201 received → the last stream: p50 / p99", spread(after_answer_ms)),
        (
            "POST sent → its new_order on the bus (a queue of our own): p50 / p99",
            spread([(bus_seen[i] - sent[i]) * 1000 for i in sent if i in bus_seen]),
        ),
        (
            "POST sent → its entry in the log (the consumer's feed): p50 / p99",
            spread([(appended[i] - sent[i]) * 1000 for i in sent if i in appended]),
        ),
        (
            "created_at → its entry in the log, both server clocks (no client lag): p50 / p99",
            spread([(appended[i] - created[i]) * 1000 for i in sent if i in appended]),
        ),
        ("orders that missed a stream of their owner", str(short)),
    ]


async def run(plan: Plan) -> list[tuple[str, str]]:
    run_id = secrets.token_hex(4)
    settings = msgspec.structs.replace(
        bench_settings(run_id),
        trusted_proxies="",
        bcrypt_rounds=4,
        log_level="WARNING",
        sse_max_streams_per_user=plan.per_user,
        consumer_metrics_port=0,  # other runs may hold the default port
    )
    logs = BENCH_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(migrate, settings.database_url)
    env = environment(settings)
    port = free_port()
    procs = [
        start("sse-api", uvicorn_argv("app:create_app", port, 1), env, logs),
        start("sse-consumer", module_argv("workers.consumer"), env, logs),
    ]
    try:
        if not await answers(f"http://127.0.0.1:{port}/ready", procs[0], within=60):
            raise RuntimeError(f"the API did not start:\n{procs[0].tail()}")
        return await measure(plan, settings, port, procs[0], procs[1])
    finally:
        for proc in procs:
            proc.stop(grace=10)
        await remove_run(settings)


def render(plan: Plan, rows: list[tuple[str, str]]) -> str:
    lines = [
        f"{plan.users} users × {plan.per_user} streams on one API process, the consumer"
        f" feeding the logs; {plan.rate:g} orders/s for {plan.seconds:g} s.",
        "",
        "| measure | value |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> Plan:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--per-user", type=int, default=5)
    parser.add_argument("--rate", type=float, default=100.0, help="orders a second (100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="of orders (10)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds idle (10)")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "sse.md")
    args = parser.parse_args(argv)
    return Plan(
        users=args.users,
        per_user=args.per_user,
        rate=args.rate,
        seconds=args.seconds,
        idle=args.idle,
        output=args.output,
    )


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    rows = asyncio.run(run(plan))
    text = render(plan, rows)
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    plan.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
