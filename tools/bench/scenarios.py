"""The load: wrk runs of tools/bench/lua/scenario.lua, one scenario after another against the seeded
stack, the drain, the login probe and the CPU each POSTed order costs; what they measured, as a
``Report``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from shared.db import asyncpg_dsn
from tools.bench.cpu import CpuUse, snapshot, used_ticks
from tools.bench.seed import (
    DEEP_AT,
    DEEP_ORDERS,
    LIST_ORDERS,
    ORDER_ITEMS,
    PASSWORD,
    Seed,
    client_header,
    write_file,
    write_ids,
)
from tools.bench.stack import (
    CLIENT_ADDRESSES,
    Memory,
    Plan,
    Stack,
    memory_tree,
    workers_present,
)

LUA = Path(__file__).resolve().parent / "lua" / "scenario.lua"
DRAIN_CONNECTIONS = 8
# A wait for orders to be processed gives up after this long without one more done.
STALL_S = 30.0
# Cores this busy before a scenario (anything else running, our idle stack included) means its
# numbers are low; the report says so.
QUIET = 0.15
JSON = "application/json"
SCENARIOS = (
    "cached_get",
    "cold_get",
    "list_50",
    "list_deep",
    "patch_noop",
    "patch_move",
    "token",
    "drain",
    "post_order",
)


@dataclass(frozen=True)
class Load:
    """One kind of request for wrk, and how many connections send it."""

    method: str
    path: str
    token: str = ""
    ids: Path | None = None
    body: Path | None = None
    content_type: str = ""
    connections: int = 64
    delay_ms: int = 0


@dataclass
class Result:
    key: str
    label: str
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    socket_errors: int = 0
    non_2xx: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    cache: dict[str, int] = field(default_factory=dict)
    wrapped: int = 0
    busy_before: float = 0.0  # share of all cores busy just before the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx


async def wrk(url: str, load: Load, seconds: int, plan: Plan, work: Path) -> Result:
    """Run wrk with tools/bench/lua/scenario.lua; its done() writes the JSON this reads."""
    report = work / f"wrk-{uuid.uuid4().hex}.json"
    env = {
        **os.environ,
        "BENCH_METHOD": load.method,
        "BENCH_PATH": load.path,
        "BENCH_IDS": str(load.ids or ""),
        "BENCH_BODY": str(load.body or ""),
        "BENCH_CTYPE": load.content_type,
        "BENCH_TOKEN": load.token,
        "BENCH_CLIENTS": str(CLIENT_ADDRESSES),
        "BENCH_THREADS": str(plan.threads),
        "BENCH_DELAY_MS": str(load.delay_ms),
        "BENCH_COUNT": "1",
        "BENCH_REPORT": str(report),
    }
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{plan.threads}",
        f"-c{max(load.connections, plan.threads)}",
        f"-d{max(seconds, 1)}s",  # wrk takes whole seconds
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    if proc.returncode != 0 or not report.exists():
        raise RuntimeError(f"wrk failed ({proc.returncode}): {output.decode(errors='replace')}")
    data: dict[str, Any] = json.loads(report.read_text())
    report.unlink()
    errors = data["errors"]
    statuses = {str(k): int(v) for k, v in data["statuses"].items()}
    return Result(
        key="",
        label="",
        requests=int(data["requests"]),
        seconds=int(data["duration_us"]) / 1e6,
        p50_ms=data["latency_us"]["p50"] / 1000,
        p99_ms=data["latency_us"]["p99"] / 1000,
        socket_errors=sum(int(errors[k]) for k in ("connect", "read", "write", "timeout")),
        non_2xx=sum(v for k, v in statuses.items() if not k.startswith("2")),
        statuses=statuses,
        cache={k: int(v) for k, v in data["cache"].items() if v},
        wrapped=int(data["wrapped"]),
    )


@dataclass
class Drain:
    orders: int
    created_s: float | None = None
    processed_s: float | None = None
    note: str = ""


@dataclass
class Report:
    plan: Plan
    results: dict[str, Result] = field(default_factory=dict)
    drain: Drain | None = None
    login_probe: tuple[Result, Result] | None = None
    deep_page: tuple[Result, Result] | None = None  # (first page, page after DEEP_AT)
    cpu: CpuUse | None = None
    memory: list[Memory] = field(default_factory=list)
    api_rss_after: list[Memory] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def show(result: Result) -> None:
    print(
        f"  {result.label:<62} {result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms"
        f"  p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
        flush=True,
    )


async def measure(
    stack: Stack,
    key: str,
    label: str,
    url: str,
    load: Load,
    warmup: Load | None = None,
    busy: float | None = None,
) -> Result:
    """A short unrecorded warm-up (connections, compiled statements, pools), then the run.

    ``busy``: the caller already waited for quiet cores (and measured this), so no wait here.
    """
    plan = stack.plan
    if busy is None:
        busy = await quiet_machine(plan.quiet_wait)
    await wrk(url, warmup or load, plan.warmup, plan, stack.work)
    result = await wrk(url, load, plan.duration, plan, stack.work)
    result = replace(result, key=key, label=label, busy_before=busy)
    show(result)
    return result


def cpu_times() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of every core, from /proc/stat."""
    with Path("/proc/stat").open() as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return sum(values), values[3] + values[4]


async def busy_share(seconds: float = 0.5) -> float:
    total0, idle0 = cpu_times()
    await asyncio.sleep(seconds)
    total1, idle1 = cpu_times()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


async def quiet_machine(patience: float) -> float:
    """How busy the cores are (our idle stack included); waits up to ``patience`` s for calm."""
    deadline = time.monotonic() + patience
    while True:
        busy = await busy_share()
        if busy < QUIET or time.monotonic() >= deadline:
            return busy


async def drain(stack: Stack, token: str, orders: int) -> Drain:
    """POST ``orders`` back to back over a few connections; time until all have processed_at."""
    result = Drain(orders)
    if not workers_present():
        result.note = "n/a: workers/consumer.py or workers/worker.py is still a placeholder"
        return result
    for name in ("consumer", "worker"):
        if not stack.procs[name].alive():
            result.note = f"n/a: the {name} exited: {stack.procs[name].tail(3)}"
            return result
    ids: list[uuid.UUID] = []
    failures = 0
    todo = iter(range(orders))
    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=stack.api,
        timeout=30.0,
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_connections=DRAIN_CONNECTIONS),
    ) as client:

        async def sender() -> None:
            nonlocal failures
            for n in todo:
                reply = await client.post(
                    "/orders", json={"items": ORDER_ITEMS}, headers=client_header(n)
                )
                if reply.status_code == 201:
                    ids.append(uuid.UUID(reply.json()["id"]))
                else:
                    failures += 1

        await asyncio.gather(*(sender() for _ in range(DRAIN_CONNECTIONS)))
    result.created_s = time.monotonic() - started
    if failures:
        result.note = f"{failures} POSTs failed"
    conn = await asyncpg.connect(asyncpg_dsn(stack.settings.database_url))
    try:
        processed, last_progress = 0, time.monotonic()
        while time.monotonic() - last_progress < 20:  # give up after 20 s without progress
            count: int = await conn.fetchval(
                "SELECT count(*) FROM orders WHERE id = ANY($1) AND processed_at IS NOT NULL", ids
            )
            if count >= len(ids):
                result.processed_s = time.monotonic() - started
                return result
            if count > processed:
                processed, last_progress = count, time.monotonic()
            await asyncio.sleep(0.05)
        worker_state = "" if stack.procs["worker"].alive() else " (the worker exited)"
        result.note = f"gave up: {processed} of {len(ids)} processed{worker_state}"
    finally:
        await conn.close()
    return result


async def orders_of(conn: asyncpg.Connection, user_id: int, unprocessed: bool = False) -> int:
    query = "SELECT count(*) FROM orders WHERE user_id = $1"
    count: int = await conn.fetchval(
        query + (" AND processed_at IS NULL" if unprocessed else ""), user_id
    )
    return count


async def wait_processed(stack: Stack, conn: asyncpg.Connection, user_id: int) -> str:
    """Poll until every order of ``user_id`` has processed_at; "" then, else why not.

    Gives up after ``STALL_S`` without one more order processed.
    """
    if not workers_present():
        return "n/a: workers/consumer.py or workers/worker.py is still a placeholder"
    left, last_progress = await orders_of(conn, user_id, unprocessed=True), time.monotonic()
    while left:
        await asyncio.sleep(0.1)
        now_left = await orders_of(conn, user_id, unprocessed=True)
        if now_left < left:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress >= STALL_S:
            worker_state = "" if stack.procs["worker"].alive() else " (the worker exited)"
            return f"gave up after {STALL_S:g} s without progress: {now_left} left{worker_state}"
        left = now_left
    return ""


async def login_probe(
    stack: Stack, cached: Load, login: Load, top: Result
) -> tuple[Result, Result, Result]:
    """Cached GETs at a steady ~quarter of their top rate, alone and while logins run.

    A saturating load measures throughput, not stalls: with both cores busy every p99 is
    queueing. The probe leaves headroom, so its p99 shows whether bcrypt (in threads) holds
    up the event loops.
    """
    plan = stack.plan
    probe_connections = 8
    rate = max(top.rps * 0.25, 50.0)
    probe = replace(
        cached,
        connections=probe_connections,
        delay_ms=max(1, round(probe_connections / rate * 1000)),
    )
    alone = await wrk(stack.api, probe, plan.duration, plan, stack.work)
    loaded, logins = await asyncio.gather(
        wrk(stack.api, probe, plan.duration, plan, stack.work),
        wrk(stack.api, login, plan.duration, plan, stack.work),
    )
    print(
        f"  cached GET p99 at ~{alone.rps:.0f} req/s: {alone.p99_ms:.2f} ms alone,"
        f" {loaded.p99_ms:.2f} ms during {logins.rps:.1f} logins/s",
        flush=True,
    )
    return alone, loaded, logins


class Scenarios:
    """Every scenario against one seeded stack, in an order where none disturbs the next."""

    def __init__(self, stack: Stack, report: Report, data: Seed) -> None:
        self.stack, self.report, self.data = stack, report, data
        self.plan, self.work, conns = stack.plan, stack.work, stack.plan.connections
        self.conns = conns
        self.token = data.tokens["load"]
        self.warm = write_ids(self.work, "warm", data.warm)
        self.paid = write_file(self.work, "paid.json", b'{"status":"PAID"}')
        self.cached = Load("GET", "/orders/{id}", self.token, self.warm, connections=conns)
        form = f"username=load%40bench.example&password={PASSWORD}".encode()
        self.login = Load(
            "POST",
            "/token",
            body=write_file(self.work, "login.form", form),
            content_type="application/x-www-form-urlencoded",
            connections=self.plan.token_connections,
        )

    async def run(self) -> None:
        stack, report, plan = self.stack, self.report, self.plan
        ceiling = Load("GET", "/", self.token, connections=self.conns)
        label = "ceiling: bare ASGI, same JWT + one Redis GET"
        report.results["ceiling"] = await measure(stack, "ceiling", label, stack.ceiling, ceiling)
        report.memory.extend(memory_tree(stack.procs["ceiling"]))
        stack.procs["ceiling"].stop()
        # The framework's own floor, loaded exactly like the cached GET.
        label = "litestar_minimal: bare Litestar, same JWT auth + one Redis GET"
        minimal = await measure(stack, "litestar_minimal", label, stack.minimal, self.cached)
        report.results["litestar_minimal"] = minimal
        report.memory.extend(memory_tree(stack.procs["litestar_minimal"]))
        stack.procs["litestar_minimal"].stop()
        # POST /orders goes last: every order it makes is an event the consumer and the
        # worker then work through, which would load every scenario after it.
        steps: dict[str, Callable[[], Awaitable[Result]]] = {
            "cached_get": self.cached_get,
            "cold_get": self.cold_get,
            "list_50": self.list_50,
            "list_deep": self.list_deep,
            "patch_noop": self.patch_noop,
            "patch_move": self.patch_move,
            "token": self.token_load,
            "post_order": self.post_order,
        }
        for key, step in steps.items():
            if key == "post_order" and "drain" in plan.only:
                await self.drain()
            if key in plan.only:
                report.results[key] = await step()
        if "drain" in plan.only and report.drain is None:
            await self.drain()

    async def cached_get(self) -> Result:
        label = "GET /orders/{id} (cached)"
        return await measure(self.stack, "cached_get", label, self.stack.api, self.cached)

    async def cold_get(self) -> Result:
        ids = write_ids(self.work, "cold", self.data.cold)
        cold = Load("GET", "/orders/{id}", self.token, ids, connections=self.conns)
        warmup = replace(cold, ids=write_ids(self.work, "cold-warmup", self.data.cold_warmup))
        label = "GET /orders/{id} (cold: every request misses)"
        return await measure(self.stack, "cold_get", label, self.stack.api, cold, warmup)

    async def list_50(self) -> Result:
        path = f"/orders/user/{self.data.user_ids['list']}"
        listing = Load("GET", path, self.data.tokens["list"], connections=self.conns)
        label = f"GET /orders/user/{{id}} ({LIST_ORDERS} orders)"
        return await measure(self.stack, "list_50", label, self.stack.api, listing)

    async def list_deep(self) -> Result:
        """The first page of the deep user's list and the page after DEEP_AT by its cursor,
        loaded alike, in turn, twice; the report compares the better run of each (issue 20:
        ≤ 1.5×). In turn, because on a shared machine a burst of other work lands on one
        run: alternating gives each page a run outside it."""
        path = f"/orders/user/{self.data.user_ids['deep']}?limit=50"
        first = Load("GET", path, self.data.tokens["deep"], connections=self.conns)
        deep = replace(first, path=f"{path}&after={self.data.deep_after}")
        first_label = f"GET /orders/user/{{id}} first page ({DEEP_ORDERS:,} orders)"
        deep_label = f"GET /orders/user/{{id}} after={{cursor at {DEEP_AT:,}}}"
        tops: list[Result] = []
        deeps: list[Result] = []
        for _ in range(2):
            tops.append(
                await measure(self.stack, "list_deep_first", first_label, self.stack.api, first)
            )
            deeps.append(await measure(self.stack, "list_deep", deep_label, self.stack.api, deep))
        top = max(tops, key=lambda r: r.rps)
        result = max(deeps, key=lambda r: r.rps)
        for run in (*tops, *deeps):
            if run.errors and run not in (top, result):
                top.socket_errors += run.socket_errors  # never hide an error of the other run
                top.non_2xx += run.non_2xx
        self.report.results["list_deep_first"] = top
        self.report.deep_page = (top, result)
        return result

    async def patch_noop(self) -> Result:
        noop = Load(
            "PATCH", "/orders/{id}", self.token, self.warm, self.paid, JSON, connections=self.conns
        )
        label = "PATCH /orders/{id} (same status: a no-op)"
        return await measure(self.stack, "patch_noop", label, self.stack.api, noop)

    async def patch_move(self) -> Result:
        ids = write_ids(self.work, "pending", self.data.pending)
        move = Load(
            "PATCH", "/orders/{id}", self.token, ids, self.paid, JSON, connections=self.conns
        )
        warmup = replace(move, ids=write_ids(self.work, "pending-warmup", self.data.pending_warmup))
        label = "PATCH /orders/{id} (PENDING -> PAID)"
        return await measure(self.stack, "patch_move", label, self.stack.api, move, warmup)

    async def token_load(self) -> Result:
        label = f"POST /token ({self.plan.token_connections} logins in flight)"
        result = await measure(self.stack, "token", label, self.stack.api, self.login)
        top = self.report.results.get("cached_get")
        if top is not None:
            alone, loaded, logins = await login_probe(self.stack, self.cached, self.login, top)
            loaded.non_2xx += logins.non_2xx
            loaded.socket_errors += logins.socket_errors
            loaded.label = f"{logins.rps:.1f} logins/s alongside"
            self.report.login_probe = (alone, loaded)
        return result

    async def post_order(self) -> Result:
        """The POST load, then the wait for its orders to be processed: the CPU each process
        group spent over both, per order made (warm-up included, on both sides)."""
        stack = self.stack
        body = write_file(self.work, "order.json", json.dumps({"items": ORDER_ITEMS}).encode())
        token, user_id = self.data.tokens["post"], self.data.user_ids["post"]
        create = Load("POST", "/orders", token, None, body, JSON, connections=self.conns)
        pids = stack.pipeline_pids()
        conn = await asyncpg.connect(asyncpg_dsn(stack.settings.database_url))
        try:
            busy = await quiet_machine(self.plan.quiet_wait)
            orders_before = await orders_of(conn, user_id)
            before, started = snapshot(pids), time.monotonic()
            result = await measure(
                stack, "post_order", "POST /orders", stack.api, create, busy=busy
            )
            note = await wait_processed(stack, conn, user_id)
            after, seconds = snapshot(pids), time.monotonic() - started
            made = await orders_of(conn, user_id) - orders_before
        finally:
            await conn.close()
        cpu = CpuUse(made, seconds, used_ticks(before, after), note=note)
        self.report.cpu = cpu
        spent = ", ".join(f"{group} {ms:.2f}" for group, ms in cpu.ms_per_order.items())
        print(
            f"  CPU ms per order over {made:,} orders and {seconds:.1f} s: {spent}"
            + (f"; {note}" if note else ""),
            flush=True,
        )
        return result

    async def drain(self) -> None:
        orders = self.plan.drain_orders
        self.report.drain = await drain(self.stack, self.data.tokens["drain"], orders)
        print(f"  drain of {orders} orders: {describe(self.report.drain)}", flush=True)


def describe(result: Drain) -> str:
    if result.processed_s is None:
        return result.note or "n/a"
    text = f"{result.processed_s:.1f} s (all created after {result.created_s:.1f} s)"
    return f"{text}; {result.note}" if result.note else text
