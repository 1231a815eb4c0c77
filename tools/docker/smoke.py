"""`just docker-smoke`: the image run for real by `docker compose`, on this machine.

Under this run's names only: the image built on the stand-in base, users per process,
``up --wait`` of docker-compose.yml with compose.smoke.yml (host network, the machine's
servers), the pipeline test against the api container, three least-privilege probes; then,
whatever happened, ``down -v`` and the run's database, role, users, keys and queues go.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
from redis import Redis

from deploy.rabbitmq_users import permissions
from shared.settings import Settings
from tools.harness.cleanup import remove_run
from tools.harness.names import ROOT, isolated
from tools.harness.processes import free_port

BASE = "order-service-standin-base:python3.11-bookworm"
IMAGE = "order-service:smoke"
ROLES = ("api", "consumer", "worker")
ADMIN = Settings(  # the machine's servers as their administrators (trust; RabbitMQ's guest)
    environment="test", database_url="postgresql+asyncpg://postgres@127.0.0.1/postgres"
)


def run(*args: str, env: dict[str, str] | None = None, check: bool = True, **kw: Any) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False, **kw)  # noqa: S603
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} ...: {done.stdout[-3000:]}{done.stderr[-3000:]}")
    return str(done.stdout)


def build() -> None:
    """On the stand-in base; pip inside uses this machine's index (a build argument only)."""
    index = os.environ.get("PIP_INDEX_URL") or os.environ.get("UV_DEFAULT_INDEX", "")
    if not index and shutil.which("pip"):
        index = run("pip", "config", "get", "global.index-url", check=False).strip()
    args = ["--build-arg", f"PIP_INDEX_URL={index}"] if index.startswith("http") else []
    args += [f"--build-arg={k}={v}" for k, v in os.environ.items() if k.lower().endswith("_proxy")]
    # The legacy builder: BuildKit would fetch the Dockerfile's `# syntax=` frontend.
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    run("docker", "build", "--network", "host", "--build-arg", f"PYTHON_BASE={BASE}", *args,
        "--tag", IMAGE, str(ROOT), env=env)  # fmt: skip


def empty_redis_db() -> int:
    """arq's job keys (arq:job:<id>) carry no prefix: the run's jobs get a database of their own."""
    for db in range(15, 0, -1):
        with Redis(db=db) as client:
            if client.dbsize() == 0:
                return db
    raise RuntimeError("no empty Redis database (1..15) for this run")


def make_users(env: dict[str, str], users: str, names: Settings, db: int) -> None:
    acl = run("sh", str(ROOT / "deploy/redis-users.sh"), env={**env, "REDIS_USER_PREFIX": users})
    with Redis(db=db) as admin:
        for line in acl.splitlines():
            admin.execute_command("ACL", "SETUSER", *line.split()[1:])
    for role, rule in permissions(names.rabbitmq_exchange, names.rabbitmq_queue).items():
        password = env[f"RABBITMQ_{role.upper()}_PASSWORD"]  # on stdin: `ps` shows arguments
        run("rabbitmqctl", "-q", "add_user", users + role, input=password)
        run("rabbitmqctl", "-q", "set_permissions", "-p", "/", users + role, *rule)


async def consumer_may_not_publish(env: dict[str, str], names: Settings) -> None:
    user, password = env["SMOKE_USERS"] + "consumer", env["RABBITMQ_CONSUMER_PASSWORD"]
    async with await aio_pika.connect(f"amqp://{user}:{password}@127.0.0.1:5672/") as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(names.rabbitmq_exchange)
        try:
            await exchange.publish(aio_pika.Message(b"{}"), routing_key="new_order")
        except aiormq.exceptions.ChannelAccessRefused:
            return
    raise RuntimeError("least privilege: the consumer's RabbitMQ user published new_order")


def smoke(compose: list[str], env: dict[str, str], names: Settings) -> None:
    run(*compose, "up", "--wait", "--wait-timeout", "180", "--no-build", env=env)
    url = f"http://127.0.0.1:{env['SMOKE_API_PORT']}"
    test = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    test += ["tests/workers/test_order_pipeline.py"]
    print(run(*test, env={**os.environ, "ORDER_SERVICE_URL": url}, cwd=ROOT).strip())
    if not re.search(r"Order [0-9a-f-]{36} processed", run(*compose, "logs", "worker", env=env)):
        raise RuntimeError("the worker's log does not say it processed the order")
    for role in ROLES:
        touched = [*compose, "exec", "-T", "--user", "0", role, "touch", "/app/probe"]
        if subprocess.run(touched, env=env, capture_output=True, check=False).returncode == 0:  # noqa: S603
            raise RuntimeError(f"least privilege: root in the {role} container wrote /app")
    asyncio.run(consumer_may_not_publish(env, names))


def cleanup(compose: list[str], env: dict[str, str], names: Settings, db: int) -> None:
    """Every step is tried, whatever failed before."""
    steps: list[Callable[[], object]] = [
        lambda: run(*compose, "down", "--volumes", "--remove-orphans", env=env),
        lambda: asyncio.run(remove_run(names)),
        lambda: run(
            "psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"DROP ROLE {env['DB_APP_ROLE']}"
        ),
        lambda: [run("rabbitmqctl", "-q", "delete_user", env["SMOKE_USERS"] + r) for r in ROLES],
        lambda: remove_redis(env["SMOKE_USERS"], db),
    ]
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - report and go on with the rest
            print(f"docker-smoke: a cleanup step failed: {exc!r}", file=sys.stderr)


def remove_redis(users: str, db: int) -> None:
    with Redis(db=db) as admin:
        admin.acl_deluser(*(users + role for role in ROLES))
        admin.flushdb()  # it was empty when the run began: what is in it now is the run's


def main() -> int:
    run_id = secrets.token_hex(4)
    names = isolated(ADMIN, run_id, "docker")
    db = empty_redis_db()
    keys = ["JWT_SECRET", "METRICS_TOKEN", "DB_APP_PASSWORD"]
    keys += [f"{server}_{r.upper()}_PASSWORD" for server in ("REDIS", "RABBITMQ") for r in ROLES]
    env = {
        **os.environ,
        **{key: secrets.token_urlsafe(24) for key in keys},
        "POSTGRES_PASSWORD": "unused",  # docker-compose.yml's own servers stay off
        "RABBITMQ_ADMIN_PASSWORD": "unused",
        "DB_APP_ROLE": f"orders_docker_{run_id}_app",
        "SMOKE_IMAGE": IMAGE,
        "SMOKE_DB_OWNER": "postgres",
        "SMOKE_DATABASE": f"orders_docker_{run_id}",
        "SMOKE_USERS": f"docker-{run_id}-",
        "SMOKE_REDIS_DB": str(db),
        "SMOKE_API_PORT": str(free_port()),
        "REDIS_PREFIX": names.redis_prefix,
        "ARQ_QUEUE": names.arq_queue,
        "RABBITMQ_EXCHANGE": names.rabbitmq_exchange,
        "RABBITMQ_QUEUE": names.rabbitmq_queue,
    }
    compose = [str(Path(sys.executable).parent / "docker-compose"), "-p", f"smoke-{run_id}"]
    compose += ["-f", f"{ROOT}/docker-compose.yml", "-f", f"{ROOT}/tools/docker/compose.smoke.yml"]
    build()
    try:
        make_users(env, env["SMOKE_USERS"], names, db)
        smoke(compose, env, names)
    except RuntimeError as exc:
        print(f"docker-smoke: FAILED: {exc}", file=sys.stderr)
        print(run(*compose, "logs", "--tail", "40", env=env, check=False), file=sys.stderr)
        return 1
    finally:
        cleanup(compose, env, names, db)
    print(f"docker-smoke: passed (run {run_id}); its containers, data and users are removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
