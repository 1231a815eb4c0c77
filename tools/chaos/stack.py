"""The run's own stack: isolated settings, the three relays, the six processes, the cleanup.

Everything is named after the run id (database, Redis prefix, RabbitMQ exchange and queues,
arq queue), so the run shares the machine's servers with others without touching their data,
and ``cleanup`` removes exactly what the run made.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import msgspec

from bench.stack import Proc, free_port, isolated_settings, settings_env, start
from shared.bus import Topology
from shared.redis import create_redis
from shared.settings import Settings
from tests.faults import FaultyLink, target_of

ROOT = Path(__file__).resolve().parent.parent
API_READY_S = 90.0  # a loaded 2-core machine can take half a minute to import the app
# The reconciler's knobs (issue 11), short so a run converges in minutes; passed through the
# environment, so a build without them ignores them. The caller's environment wins.
RECONCILE_DEFAULTS = {"RECONCILE_AFTER_S": "10", "RECONCILE_INTERVAL_S": "5"}


def chaos_settings(run_id: str) -> Settings:
    """The benchmark's isolated settings (every name the run's own, no effective rate limit),
    for the chaos run: cheap bcrypt, readable logs, no metrics ports, quick jobs."""
    for name, value in RECONCILE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    return msgspec.structs.replace(
        isolated_settings(run_id, "chaos"),
        environment="test",
        bcrypt_rounds=4,
        consumer_metrics_port=0,
        worker_metrics_port=0,
        process_order_delay_s=0.5,
        log_json=False,
        log_level="INFO",
    )


@dataclass
class Links:
    """One relay per server; the processes reach the servers only through these."""

    postgres: FaultyLink
    redis: FaultyLink
    rabbitmq: FaultyLink

    @classmethod
    def open(cls, settings: Settings) -> Links:
        links = cls(
            FaultyLink(target_of(settings.database_url)),
            FaultyLink(target_of(settings.redis_url)),
            FaultyLink(target_of(settings.rabbitmq_url)),
        )
        for link in links.all().values():
            link.start()
        return links

    def all(self) -> dict[str, FaultyLink]:
        return {"postgres": self.postgres, "redis": self.redis, "rabbitmq": self.rabbitmq}

    def routed(self, settings: Settings) -> Settings:
        """``settings`` with every server address pointing at its relay."""
        return msgspec.structs.replace(
            settings,
            database_url=self.postgres.url(settings.database_url),
            redis_url=self.redis.url(settings.redis_url),
            rabbitmq_url=self.rabbitmq.url(settings.rabbitmq_url),
        )

    def restore_all(self) -> None:
        for link in self.all().values():
            link.restore()

    def close(self) -> None:
        for link in self.all().values():
            with contextlib.suppress(Exception):
                link.close()


@dataclass
class Role:
    """One long-lived process of the stack; each incarnation logs to a file of its own."""

    name: str
    argv: list[str]
    env: dict[str, str]
    logs: Path
    port: int = 0  # APIs only
    incarnations: int = 0
    proc: Proc | None = None

    @property
    def is_api(self) -> bool:
        return self.port != 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def launch(self) -> None:
        self.incarnations += 1
        self.proc = start(f"{self.name}.{self.incarnations}", self.argv, self.env, self.logs)

    def kill(self) -> None:
        """SIGKILL, no goodbye: what an OOM kill or a power cut does."""
        if self.proc is None or not self.proc.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.popen.wait(10)

    async def ready(self) -> bool:
        """An API answers /health (bounded); other processes are ready once started."""
        if not self.is_api:
            return self.alive()
        deadline = time.monotonic() + API_READY_S
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline and self.alive():
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return True
                await asyncio.sleep(0.2)
        return False


@dataclass
class Stack:
    settings: Settings  # direct addresses: the harness's own checks bypass the relays
    links: Links
    logs: Path
    roles: list[Role] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, logs: Path) -> Stack:
        links = Links.open(settings)
        stack = cls(settings, links, logs)
        env = settings_env(links.routed(settings))
        py = sys.executable
        for n in (1, 2):
            port = free_port()
            argv = [py, "-m", "uvicorn", "app:create_app", "--factory", "--host", "127.0.0.1"]
            argv += ["--port", str(port), "--no-access-log"]
            stack.roles.append(Role(f"api-{n}", argv, env, logs, port=port))
        for n in (1, 2):
            stack.roles.append(Role(f"consumer-{n}", [py, "-m", "workers.consumer"], env, logs))
            stack.roles.append(Role(f"worker-{n}", [py, "-m", "workers.worker"], env, logs))
        return stack

    @property
    def apis(self) -> list[str]:
        return [role.url for role in self.roles if role.is_api]

    async def start(self) -> None:
        for role in self.roles:
            role.launch()
        for role in self.roles:
            if not await role.ready():
                raise RuntimeError(f"{role.name} did not start:\n{self.tail(role)}")

    async def revive(self) -> list[str]:
        """Start every role that is not running; the names of those that would not start."""
        failed = []
        for role in self.roles:
            if not role.alive():
                role.launch()
                if not await role.ready():
                    failed.append(role.name)
        return failed

    def tail(self, role: Role) -> str:
        return role.proc.tail() if role.proc is not None else ""

    def worker_logs(self) -> list[Path]:
        return sorted(self.logs.glob("worker-*.log"))

    def stop(self) -> None:
        for role in self.roles:
            role.kill()  # the data is dropped next: no need to wait for graceful shutdowns
        self.links.close()


async def forget_redis_data(settings: Settings, order_ids: set[str]) -> int:
    """Delete the run's keys from the shared Redis, as a restart without persistence would.

    Never FLUSHDB: other runs share this Redis. The run's keys are those under its prefix
    (cache, limiter, arq queue) plus arq's per-job keys (``arq:job:…``, ``arq:result:…``,
    ``arq:in-progress:…``, ``arq:retry:…``), which arq does not namespace: they are picked by
    the run's order ids (``process_order:<id>``) and arq queue name (cron job ids).
    Returns how many keys went.
    """
    redis = create_redis(settings.redis_url)
    deleted = 0
    try:
        async for key in redis.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
            deleted += await redis.delete(key)
        async for key in redis.scan_iter(match="arq:*", count=1000):
            text = key.decode() if isinstance(key, bytes) else str(key)
            job_id = text.split(":", 2)[-1] if text.count(":") >= 2 else ""
            order_id = job_id.rpartition(":")[2]
            if settings.arq_queue in text or order_id in order_ids:
                deleted += await redis.delete(key)
    finally:
        await redis.aclose()
    return deleted


async def cleanup(settings: Settings, order_ids: set[str]) -> None:
    """Remove the run's RabbitMQ exchange and queues and its Redis keys (the caller drops the
    database); each part is attempted even if another fails."""
    with contextlib.suppress(Exception):
        await forget_redis_data(settings, order_ids)
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(settings.rabbitmq_url, timeout=10)
        async with connection:
            await Topology(settings).delete(await connection.channel())
