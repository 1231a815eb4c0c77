"""The stack under test: the run's isolated settings, the API, consumer, worker, ceiling and
litestar_minimal as processes (and their memory), and removing everything the run made.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import msgspec

from shared.db import asyncpg_dsn
from shared.settings import Settings
from tools.harness.names import ROOT, environment, isolated, local_settings
from tools.harness.processes import Proc, answers, free_port, module_argv, start, uvicorn_argv

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
    strict: bool  # a missed target fails the run (errors always do)
    app: str
    only: frozenset[str]
    output: Path
    hold: bool
    quiet_wait: float
    traced: bool = False  # every order traced, exported to a receiver in this process


def bench_settings(run_id: str) -> Settings:
    """The developer's settings (for the servers' addresses) with the run's own names, in
    production, with wrk playing the proxy and no effective rate limit."""
    return msgspec.structs.replace(
        isolated(local_settings(), run_id, "bench"),
        environment="production",
        trusted_proxies="127.0.0.1,::1",  # wrk plays the proxy: see CLIENT_ADDRESSES
        jwt_secret=secrets.token_urlsafe(32),
        rate_limit=BENCH_RATE_LIMIT,
        token_rate_limit=BENCH_RATE_LIMIT,
    )


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
        env = environment(self.settings)
        # As a deployment with several API processes does: their metrics in one directory.
        metrics = self.work / "prometheus"
        metrics.mkdir(exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        self.api_port = free_port()
        argv = uvicorn_argv(self.plan.app, self.api_port, self.plan.workers)
        self.procs["api"] = start("api", argv, env, self.logs)
        self.procs["consumer"] = start("consumer", module_argv("workers.consumer"), env, self.logs)
        self.procs["worker"] = start("worker", module_argv("workers.worker"), env, self.logs)

    def start_ceiling(self, key: str) -> None:
        self.ceiling_port = self._start_reference("ceiling", "tools.bench.ceiling:create_app", key)

    def start_minimal(self, key: str) -> None:
        self.minimal_port = self._start_reference(
            "litestar_minimal", "tools.bench.minimal:create_app", key
        )

    def _start_reference(self, name: str, target: str, key: str) -> int:
        """A yardstick app serving the Redis value ``key``, served as the API is; its port."""
        env = {**environment(self.settings), "BENCH_CEILING_KEY": key}
        port = free_port()
        argv = uvicorn_argv(target, port, self.plan.workers)
        self.procs[name] = start(name, argv, env, self.logs)
        return port

    def pipeline_pids(self) -> dict[str, int]:
        """The pids whose process trees are the API, consumer and worker CPU groups."""
        return {name: self.procs[name].pid for name in ("api", "consumer", "worker")}

    def stop(self) -> None:
        """SIGTERM all at once, then SIGKILL stragglers: the worker would otherwise wait for
        its sleeping jobs, whose data is about to be dropped anyway."""
        for proc in self.procs.values():
            if proc.alive():
                proc.signal(signal.SIGTERM)
        for proc in self.procs.values():
            proc.stop(grace=5.0)

    async def wait_ready(self, url: str, proc: Proc, expect: int = 200) -> None:
        if not await answers(url, proc, within=60.0, expect=expect):
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


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-") as name:
        yield Path(name)
