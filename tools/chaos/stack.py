"""The run's own stack on the harness: isolated settings, the three relays, the six processes.

Everything is named after the run id (``tools.harness.names``), so the run shares the
machine's servers with others without touching their data, and ``tools.harness.cleanup``
removes exactly what the run made.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from shared.settings import Settings
from tools.harness.faults import FaultyLink, target_of
from tools.harness.names import environment, isolated, local_settings
from tools.harness.processes import Proc, answers, free_port, module_argv, start, uvicorn_argv

API_READY_S = 90.0  # a loaded 2-core machine can take half a minute to import the app
# The reconciler's knobs (issue 11), short so a run converges in minutes; passed through the
# environment, so a build without them ignores them. The caller's environment wins.
RECONCILE_DEFAULTS = {"RECONCILE_AFTER_S": "10", "RECONCILE_INTERVAL_S": "5"}
NO_RATE_LIMIT = "100000000/minute"  # the load is a few users at full speed


def chaos_settings(run_id: str) -> Settings:
    """The developer's servers, every name the run's own, no effective rate limit, cheap
    bcrypt, readable logs, no metrics ports, quick jobs."""
    for name, value in RECONCILE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    return msgspec.structs.replace(
        isolated(local_settings(), run_id, "chaos"),
        environment="test",
        jwt_secret=secrets.token_urlsafe(32),
        rate_limit=NO_RATE_LIMIT,
        token_rate_limit=NO_RATE_LIMIT,
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
        if self.proc is not None:
            self.proc.kill()

    async def ready(self) -> bool:
        """An API answers /health (bounded); other processes are ready once started."""
        if self.proc is None or not self.is_api:
            return self.alive()
        return await answers(f"{self.url}/health", self.proc, within=API_READY_S)


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
        env = environment(links.routed(settings))
        for n in (1, 2):
            port = free_port()
            argv = uvicorn_argv("app:create_app", port)
            stack.roles.append(Role(f"api-{n}", argv, env, logs, port=port))
        for n in (1, 2):
            stack.roles.append(Role(f"consumer-{n}", module_argv("workers.consumer"), env, logs))
            stack.roles.append(Role(f"worker-{n}", module_argv("workers.worker"), env, logs))
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
