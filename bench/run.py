"""`just bench`: start the stack on loopback, load it with wrk, print one table.

The run is isolated from development data: its own database (created by the migrations and
dropped afterwards), its own Redis prefix, RabbitMQ exchange/queues and arq queue, all named
after a random run id and removed at the end. It starts the API (one process per core), one
consumer and one worker, plus the *ceiling* (bench/ceiling.py: a bare ASGI app that verifies
the same JWT and returns one Redis value) served the same way, and reports every scenario's
throughput as a fraction of the ceiling's.

    python bench/run.py              # ~3 minutes: 10 s per scenario
    python bench/run.py --smoke      # < 1 minute: fails on errors only, not on targets

The table goes to stdout and to ``.bench/last.md``; BENCHMARKS.md explains each scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import msgspec
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/, not the project, on the path
    sys.path.insert(0, str(ROOT))

from shared.bus import Topology  # noqa: E402
from shared.database import asyncpg_dsn, drop_database, migrate  # noqa: E402
from shared.redis import create_redis  # noqa: E402
from shared.settings import Settings, load_settings  # noqa: E402

LUA = ROOT / "bench" / "lua" / "scenario.lua"
BENCH_DIR = ROOT / ".bench"
PASSWORD = "bench-password-123"
# The limiter keys on the client address. wrk rotates X-Forwarded-For through this many
# addresses (the run names loopback in TRUSTED_PROXIES), so each key's history stays about as
# long as a real client's under the default 100/minute; the limits are high enough that
# nothing is refused, but the limiter does all its work on every request.
CLIENT_ADDRESSES = 2000
BENCH_RATE_LIMIT = "100000000/minute"
ORDER_ITEMS = [
    {"name": "Item 1", "quantity": 2, "price": "100.50"},
    {"name": "Item 2", "quantity": 1, "price": "250.00"},
]
ORDER_TOTAL = Decimal("451.00")
WARM_ORDERS = 1000
LIST_ORDERS = 50
# Pools that are walked once (cold GET, PENDING -> PAID) are sized for this many requests a
# second; a run that outpaces them says so under the table.
POOL_RPS = 2500
DRAIN_CONNECTIONS = 8
# Cores this busy before a scenario (anything else running, our idle stack included) means its
# numbers are low; the report says so.
QUIET = 0.15
JSON = "application/json"
# Targets from the issue, as fractions of the ceiling's requests/s.
TARGETS = {
    "cached_get": 0.6,
    "list_50": 0.25,
    "post_order": 0.2,
    "patch_noop": 0.2,
    "patch_move": 0.2,
}
DRAIN_TARGET_S = 10.0
DRAIN_TARGET_ORDERS = 1000
LOGIN_P99_FACTOR = 2.0
API_RSS_LIMIT_MB = 150.0
SCENARIOS = (
    "cached_get",
    "cold_get",
    "list_50",
    "patch_noop",
    "patch_move",
    "token",
    "drain",
    "post_order",
)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Plan:
    duration: int
    warmup: int
    connections: int
    threads: int
    workers: int
    token_connections: int
    drain_orders: int
    smoke: bool
    server: str
    app: str
    only: frozenset[str]
    output: Path
    hold: bool
    quiet_wait: float


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
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    parser.add_argument(
        "--app",
        default="app:create_app",
        help="the API's factory, e.g. bench.ablation:without_rate_limit",
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated subset of: {', '.join(SCENARIOS)} (the ceiling always runs)",
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
    args = parser.parse_args(argv)
    only = frozenset(name for name in str(args.only).split(",") if name)
    if unknown := only - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    smoke = bool(args.smoke)
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
        server=str(args.server),
        app=str(args.app),
        only=only or frozenset(SCENARIOS),
        output=Path(args.output),
        hold=bool(args.hold),
        quiet_wait=float(args.quiet_wait),
    )


def isolated_settings(run_id: str, kind: str = "bench") -> Settings:
    """The developer's settings (for the servers' addresses); every name the run's own
    (``kind`` and ``run_id`` in each: the chaos run uses this too)."""
    base = load_settings({"ENVIRONMENT": "development", **os.environ}, env_file=ROOT / ".env")
    database_url = make_url(base.database_url).set(database=f"orders_{kind}_{run_id}")
    return msgspec.structs.replace(
        base,
        environment="production",
        trusted_proxies="127.0.0.1,::1",  # wrk plays the proxy: see CLIENT_ADDRESSES
        database_url=database_url.render_as_string(hide_password=False),
        jwt_secret=secrets.token_urlsafe(32),
        rate_limit=BENCH_RATE_LIMIT,
        token_rate_limit=BENCH_RATE_LIMIT,
        redis_prefix=f"{kind}:{run_id}:",
        rabbitmq_exchange=f"orders.{kind}.{run_id}",
        rabbitmq_queue=f"new_order.{kind}.{run_id}",
        arq_queue=f"{kind}:{run_id}:arq:queue",
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the environment the subprocesses read them from."""
    env = dict(os.environ)
    for name in Settings.__struct_fields__:
        value = getattr(settings, name)
        if value is None:
            env.pop(name.upper(), None)
        elif isinstance(value, bool):
            env[name.upper()] = "true" if value else "false"
        else:
            env[name.upper()] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group it leads, then SIGKILL what is left after ``grace``."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)


def start(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Proc:
    """Start a process in its own group (so stopping it reaches its workers too)."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(  # noqa: S603 - our interpreter running our modules
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Proc(name, popen, log)


def server_argv(
    server: str, target: str, port: int, workers: int
) -> tuple[list[str], dict[str, str]]:
    """The command serving ``target`` (``module:factory``), the same for the API and ceiling."""
    if server == "granian":
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        argv += ["--no-access-log", "bench.serving:behind_proxy"]
        return argv, {"BENCH_ASGI_TARGET": target}
    argv = [sys.executable, "-m", "uvicorn", target, "--factory"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    return [*argv, "--no-access-log", "--no-proxy-headers"], {}


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (a server's worker processes, multiprocessing helpers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


@dataclass(frozen=True)
class Memory:
    process: str
    pid: int
    peak_mb: float
    rss_mb: float


def memory_of(name: str, pid: int) -> Memory | None:
    """VmHWM (the peak resident set) and VmRSS from /proc, in MB."""
    values: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0]) / 1024
    except OSError:
        return None
    return Memory(name, pid, values.get("VmHWM", 0.0), values.get("VmRSS", 0.0))


def memory_tree(proc: Proc) -> list[Memory]:
    """The process and its descendants, each named by its role."""
    kids = children(proc.pid)
    found = [memory_of(f"{proc.name} supervisor" if kids else proc.name, proc.pid)]
    serving = 0
    for pid in kids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" in cmdline:
            found.append(memory_of(f"{proc.name} (multiprocessing resource tracker)", pid))
        else:
            serving += 1
            found.append(memory_of(f"{proc.name} process {serving}", pid))
    return [m for m in found if m is not None]


# --------------------------------------------------------------------------- wrk


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
    """Run wrk with bench/lua/scenario.lua; its done() writes the JSON this reads."""
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


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    plan: Plan
    settings: Settings
    logs: Path
    work: Path
    api_port: int = 0
    ceiling_port: int = 0
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ceiling(self) -> str:
        return f"http://127.0.0.1:{self.ceiling_port}"

    def start_services(self) -> None:
        env = settings_env(self.settings)
        # As a deployment with several API processes does: their metrics in one directory.
        metrics = self.work / "prometheus"
        metrics.mkdir(exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        self.api_port = free_port()
        argv, extra = server_argv(self.plan.server, self.plan.app, self.api_port, self.plan.workers)
        self.procs["api"] = start("api", argv, {**env, **extra}, self.logs)
        py = sys.executable
        self.procs["consumer"] = start("consumer", [py, "-m", "workers.consumer"], env, self.logs)
        self.procs["worker"] = start("worker", [py, "-m", "workers.worker"], env, self.logs)

    def start_ceiling(self, key: str) -> None:
        env = {**settings_env(self.settings), "BENCH_CEILING_KEY": key}
        self.ceiling_port = free_port()
        argv, extra = server_argv(
            self.plan.server, "bench.ceiling:create_app", self.ceiling_port, self.plan.workers
        )
        self.procs["ceiling"] = start("ceiling", argv, {**env, **extra}, self.logs)

    def stop(self) -> None:
        """SIGTERM all at once, then SIGKILL stragglers: the worker would otherwise wait for
        its sleeping jobs, whose data is about to be dropped anyway."""
        for proc in self.procs.values():
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            proc.stop(grace=5.0)

    async def wait_ready(self, url: str, proc: Proc, expect: int = 200) -> None:
        deadline = time.monotonic() + 60.0
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not proc.alive():
                    raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == expect:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{proc.name} not ready at {url} within 60 s:\n{proc.tail()}")


def workers_present() -> bool:
    """The consumer's and worker's entry points exist (placeholders have no ``main``)."""
    return all(
        "def main" in (ROOT / "workers" / f"{name}.py").read_text(errors="replace")
        for name in ("consumer", "worker")
    )


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Seed:
    tokens: dict[str, str]
    user_ids: dict[str, int]
    warm: list[uuid.UUID]
    cold: list[uuid.UUID]
    cold_warmup: list[uuid.UUID]
    pending: list[uuid.UUID]
    pending_warmup: list[uuid.UUID]


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
    return Seed(tokens, user_ids, warm, cold, cold_warmup, pending, pending_warmup)


def write_ids(directory: Path, name: str, ids: Sequence[uuid.UUID]) -> Path:
    path = directory / f"{name}.ids"
    path.write_text("".join(f"{i}\n" for i in ids))
    return path


def write_file(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


# --------------------------------------------------------------------------- scenarios


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
    memory: list[Memory] = field(default_factory=list)
    api_rss_after: list[Memory] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def show(result: Result) -> None:
    print(
        f"  {result.label:<46} {result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms"
        f"  p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
        flush=True,
    )


async def measure(
    stack: Stack, key: str, label: str, url: str, load: Load, warmup: Load | None = None
) -> Result:
    """A short unrecorded warm-up (connections, compiled statements, pools), then the run."""
    plan = stack.plan
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
        # POST /orders goes last: every order it makes is an event the consumer and the
        # worker then work through, which would load every scenario after it.
        steps: dict[str, Callable[[], Awaitable[Result]]] = {
            "cached_get": self.cached_get,
            "cold_get": self.cold_get,
            "list_50": self.list_50,
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
        body = write_file(self.work, "order.json", json.dumps({"items": ORDER_ITEMS}).encode())
        token = self.data.tokens["post"]
        create = Load("POST", "/orders", token, None, body, JSON, connections=self.conns)
        return await measure(self.stack, "post_order", "POST /orders", self.stack.api, create)

    async def drain(self) -> None:
        orders = self.plan.drain_orders
        self.report.drain = await drain(self.stack, self.data.tokens["drain"], orders)
        print(f"  drain of {orders} orders: {describe(self.report.drain)}", flush=True)


# --------------------------------------------------------------------------- the table


def describe(result: Drain) -> str:
    if result.processed_s is None:
        return result.note or "n/a"
    text = f"{result.processed_s:.1f} s (all created after {result.created_s:.1f} s)"
    return f"{text}; {result.note}" if result.note else text


def verdict(ok: bool, smoke: bool) -> str:
    if ok:
        return "PASS"
    return "fail (not enforced in smoke)" if smoke else "**FAIL**"


def scenario_table(report: Report) -> tuple[list[str], bool]:
    plan, results = report.plan, report.results
    ceiling = results.get("ceiling")
    top = ceiling.rps if ceiling and ceiling.rps else math.nan
    passed = True
    lines = [
        "| scenario | requests/s | p50 ms | p99 ms | errors | × ceiling | target | result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for key, result in results.items():
        fraction = result.rps / top
        target = TARGETS.get(key)
        outcome = ""
        if result.errors:
            outcome, passed = "**ERRORS**", False
        elif target is not None:
            ok = fraction >= target
            outcome = verdict(ok, plan.smoke)
            passed = passed and (ok or plan.smoke)
        rps = f"{result.rps:,.0f}" if result.rps >= 100 else f"{result.rps:.1f}"
        cells = [
            result.label,
            rps,
            f"{result.p50_ms:.1f}",
            f"{result.p99_ms:.1f}",
            str(result.errors),
            f"{fraction:.2f}" if not math.isnan(fraction) else "n/a",
            f"≥ {target:.2f}" if target is not None else "",
            outcome,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines, passed


def source_version() -> str:
    """The commit benchmarked, and whether the working tree differed from it."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"],  # noqa: S607 - git from PATH
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "an unknown commit"
    return f"`{described}`"


def render(report: Report) -> tuple[str, bool]:
    """The markdown report, and whether the run passed (errors always; targets unless smoke)."""
    plan = report.plan
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M')} of {source_version()}:"
        f" {os.cpu_count()} cores; {plan.server}, "
        f"{plan.workers} API processes ({plan.app}), one consumer, one worker; wrk"
        f" -t{plan.threads} -c{plan.connections}; {plan.duration} s per scenario after a"
        f" {plan.warmup} s warm-up{'; smoke run' if plan.smoke else ''}.",
        "",
    ]
    table, passed = scenario_table(report)
    lines += [*table, ""]
    if report.drain is not None:
        d = report.drain
        if d.processed_s is None:
            lines.append(f"- Drain of {d.orders} orders: {d.note or 'n/a'}")
            passed = passed and d.note.startswith("n/a")
        else:
            full_size = d.orders >= DRAIN_TARGET_ORDERS
            ok = d.processed_s <= DRAIN_TARGET_S * d.orders / DRAIN_TARGET_ORDERS
            lines.append(
                f"- Drain: {d.orders} orders POSTed back to back over {DRAIN_CONNECTIONS}"
                f" connections, all with processed_at after **{d.processed_s:.1f} s** (all"
                f" created after {d.created_s:.1f} s); target ≤ {DRAIN_TARGET_S:g} s for"
                f" {DRAIN_TARGET_ORDERS:,}: "
                + (verdict(ok, plan.smoke) if full_size else "not measured at this size")
                + (f"; {d.note}" if d.note else "")
            )
            passed = passed and not d.note and (ok or plan.smoke or not full_size)
    if report.login_probe is not None:
        alone, loaded = report.login_probe
        ratio = loaded.p99_ms / alone.p99_ms if alone.p99_ms else math.inf
        ok = ratio <= LOGIN_P99_FACTOR
        lines.append(
            f"- Cached GET p99 while /token is loaded ({loaded.label}): {loaded.p99_ms:.1f} ms,"
            f" vs {alone.p99_ms:.1f} ms without logins, both at a steady ~{alone.rps:,.0f}"
            f" req/s: **{ratio:.1f}×**; target ≤ {LOGIN_P99_FACTOR:g}×: {verdict(ok, plan.smoke)}"
        )
        if loaded.errors or alone.errors:
            lines.append(f"  - errors during the probe: {loaded.errors + alone.errors}")
            passed = False
        passed = passed and (ok or plan.smoke)
    if report.api_rss_after:
        worst = max(m.rss_mb for m in report.api_rss_after)
        ok = worst <= API_RSS_LIMIT_MB
        each = ", ".join(f"{m.rss_mb:.0f}" for m in report.api_rss_after)
        lines.append(
            f"- API process RSS after the run: {each} MB; target ≤ {API_RSS_LIMIT_MB:g} MB:"
            f" {verdict(ok, plan.smoke)}"
        )
        passed = passed and (ok or plan.smoke)
    lines += [f"- {note}" for note in report.notes]
    if report.memory:
        lines += [
            "",
            "| process | peak RSS (VmHWM) MB | RSS at the end MB |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| {m.process} | {m.peak_mb:.0f} | {m.rss_mb:.0f} |" for m in report.memory]
    return "\n".join(lines) + "\n", passed


# --------------------------------------------------------------------------- clean-up


async def evented_orders(settings: Settings) -> list[uuid.UUID]:
    """Orders that had an event (so may have arq keys), read before the database goes."""
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        conn = await asyncpg.connect(asyncpg_dsn(settings.database_url), timeout=5)
        try:
            rows = await conn.fetch("SELECT order_id FROM outbox")
        finally:
            await conn.close()
        return [row["order_id"] for row in rows]
    return []


async def remove_traces(settings: Settings, order_ids: list[uuid.UUID], run_id: str) -> None:
    """Every Redis key and RabbitMQ object the run made (the database is dropped apart)."""
    redis = create_redis(settings.redis_url)
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"*{run_id}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await redis.delete(*batch)
                batch = []
        if batch:
            await redis.delete(*batch)
        # arq names its keys after the job id (process_order:<order id>), not the queue.
        for at in range(0, len(order_ids), 500):
            keys = [
                f"arq:{kind}:process_order:{order_id}"
                for order_id in order_ids[at : at + 500]
                for kind in ("job", "result", "in-progress", "retry")
            ]
            await redis.delete(*keys)
    finally:
        await redis.aclose()
    try:
        connection = await aio_pika.connect(settings.rabbitmq_url, timeout=5)
        async with connection:
            await Topology(settings).delete(await connection.channel())
    except (OSError, aio_pika.exceptions.AMQPError) as exc:
        print(f"could not remove the run's RabbitMQ queues: {exc}", file=sys.stderr)


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-") as name:
        yield Path(name)


async def hold(stack: Stack, data: Seed) -> None:
    """Keep the seeded stack up for profiling by hand; Ctrl-C (or SIGTERM) tears it down."""
    info = {
        "api": stack.api,
        "ceiling": stack.ceiling,
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
    env = settings_env(stack.settings)
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
    tokens, user_ids = await register_users(stack.api, ["load", "list", "drain", "post"])
    data = await seed(stack, tokens, user_ids)
    stack.start_ceiling(f"{stack.settings.redis_prefix}order:{data.warm[0]}")
    await stack.wait_ready(f"{stack.ceiling}/", stack.procs["ceiling"], expect=401)
    seeded = len(data.cold) + len(data.cold_warmup) + len(data.pending) + len(data.pending_warmup)
    print(
        f"seeded {seeded + WARM_ORDERS + LIST_ORDERS:,} orders;"
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
    report.notes.append(
        f"bcrypt cost {rounds} (the default). Rate limits {BENCH_RATE_LIMIT}, with"
        f" X-Forwarded-For rotating over {CLIENT_ADDRESSES:,} client addresses: the limiter"
        " does its full work on every request and refuses none."
    )
    moved = report.results.get("patch_move")
    if moved is not None and moved.wrapped:
        report.notes.append("PENDING -> PAID ran out of PENDING orders: later PATCHes were no-ops.")
    elif moved is not None:
        report.notes.append(
            f"PENDING -> PAID: each of the {moved.requests:,} PATCHes moved a different order."
        )
    noisy = [r for r in report.results.values() if r.busy_before >= QUIET]
    if noisy:
        listed = ", ".join(f"{r.key} ({r.busy_before:.0%})" for r in noisy)
        report.notes.append(
            f"The cores were already ≥ {QUIET:.0%} busy before: {listed}; other work on the"
            " machine makes those numbers low."
        )
    warm = report.results.get("cached_get")
    if warm is not None and warm.cache.get("MISS"):
        report.notes.append(f"Cached GET had {warm.cache['MISS']:,} misses (cache TTL expired?).")
    cold = report.results.get("cold_get")
    if cold is not None:
        misses, hits = cold.cache.get("MISS", 0), cold.cache.get("HIT", 0)
        report.notes.append(f"Cold GET answered {misses:,} misses and {hits:,} hits.")


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk (`just bench` does that)", file=sys.stderr)
        return 2
    run_id = secrets.token_hex(4)
    settings = isolated_settings(run_id)
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
            order_ids = asyncio.run(evented_orders(settings))
            asyncio.run(drop_database(settings.database_url))
            asyncio.run(remove_traces(settings, order_ids, run_id))
    if plan.hold:
        return 0
    text, passed = render(report)
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    plan.output.write_text(text)
    print(f"\n{text}\nwritten to {plan.output}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
