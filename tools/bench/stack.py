"""The stack under test: the run's isolated settings, the API, consumer, worker, ceiling and
litestar_minimal as processes (and their memory), and removing everything the run made.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import msgspec
from sqlalchemy.engine import make_url

from shared.bus import Topology
from shared.database import asyncpg_dsn
from shared.redis import create_redis
from shared.settings import Settings, load_api_settings

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
# The limiter keys on the client address. wrk rotates X-Forwarded-For through this many
# addresses (the run names loopback in TRUSTED_PROXIES), so each key's history stays about as
# long as a real client's under the default 100/minute; the limits are high enough that
# nothing is refused, but the limiter does all its work on every request.
CLIENT_ADDRESSES = 2000
BENCH_RATE_LIMIT = "100000000/minute"


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


def isolated_settings(run_id: str, kind: str = "bench") -> Settings:
    """The developer's settings (for the servers' addresses); every name the run's own
    (``kind`` and ``run_id`` in each: the chaos run uses this too)."""
    base = load_api_settings({"ENVIRONMENT": "development", **os.environ}, env_file=ROOT / ".env")
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


@dataclass
class Stack:
    plan: Plan
    settings: Settings
    logs: Path
    work: Path
    api_port: int = 0
    ceiling_port: int = 0
    minimal_port: int = 0
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ceiling(self) -> str:
        return f"http://127.0.0.1:{self.ceiling_port}"

    @property
    def minimal(self) -> str:
        return f"http://127.0.0.1:{self.minimal_port}"

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
        self.ceiling_port = self._start_reference("ceiling", "bench.ceiling:create_app", key)

    def start_minimal(self, key: str) -> None:
        self.minimal_port = self._start_reference(
            "litestar_minimal", "bench.minimal:create_app", key
        )

    def _start_reference(self, name: str, target: str, key: str) -> int:
        """A yardstick app serving the Redis value ``key``, served as the API is; its port."""
        env = {**settings_env(self.settings), "BENCH_CEILING_KEY": key}
        port = free_port()
        argv, extra = server_argv(self.plan.server, target, port, self.plan.workers)
        self.procs[name] = start(name, argv, {**env, **extra}, self.logs)
        return port

    def pipeline_pids(self) -> dict[str, int]:
        """The pids whose process trees are the API, consumer and worker CPU groups."""
        return {name: self.procs[name].pid for name in ("api", "consumer", "worker")}

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


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-") as name:
        yield Path(name)
