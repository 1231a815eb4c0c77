"""`just docker-check`: build the production image and run it for real on this machine.

1. A Docker engine: installed from Debian's packages (docker.io) and started as
   ``dockerd --iptables=false`` if there is none.
2. The base: no image registry is reachable here, so ``python:3.11-slim-bookworm`` cannot be
   pulled. A stand-in is made once from Debian's packages (debootstrap minbase bookworm with
   python3.11 and python3.11-venv, ``python`` in /usr/local/bin, this machine's CA bundle) and
   imported as BASE_TAG; later runs reuse it.
3. The image: the Dockerfile, built with ``--network host`` and ``PYTHON_BASE=BASE_TAG``; pip
   inside the build reaches the package index this machine's pip uses (passed as build
   arguments, never written to a file).
4. The run: the migrations (as the database owner), then api, consumer and worker containers,
   with host networking against this machine's PostgreSQL, Redis and RabbitMQ, each process
   with its own credentials (deploy/redis-users.sh, deploy/rabbitmq_users.py) and production
   settings (a random JWT_SECRET for the api alone), all under names of this run only: a
   database, a Redis database and key prefix, exchange and queue names, free ports. Each
   container is hardened as docker-compose.yml's are (HARDENING): no capabilities, no new
   privileges, a read-only root filesystem with tmpfs where the process writes.
5. The smoke, through the API container: register, token, create an order, read it, wait for
   the worker to set ``processed_at``; the worker's log names the order; the image's own
   HEALTHCHECK reports the API healthy.
6. Whatever happens (also Ctrl-C or SIGTERM), everything the run made is removed: containers,
   database and role, Redis users and keys, RabbitMQ users, exchanges and queues. Kept: the
   base (BASE_TAG) and the last image (IMAGE_TAG) and its builder stage, as build cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx
from redis import Redis
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.rabbitmq_users import ROLES, permissions  # noqa: E402
from migrations.admin import drop_database  # noqa: E402
from shared.messaging.bus import Topology  # noqa: E402
from shared.settings import Settings  # noqa: E402

BASE_TAG = "order-service-standin-base:python3.11-bookworm"
IMAGE_TAG = "order-service:docker-check"
LABEL = "org.order-service.docker-check"
DEBIAN_SUITE = "bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST = "127.0.0.1"
PG_URL = os.environ.get(
    "DOCKER_CHECK_DATABASE_URL", f"postgresql+asyncpg://postgres@{HOST}:5432/postgres"
)
REDIS_BASE = os.environ.get("DOCKER_CHECK_REDIS_URL", f"redis://{HOST}:6379")
AMQP_ADMIN_URL = os.environ.get("DOCKER_CHECK_RABBITMQ_URL", f"amqp://guest:guest@{HOST}:5672/")
ENGINE_WAIT_S = 60
PROCESSED_WAIT_S = 60
HEALTHY_WAIT_S = 60
# docker-compose.yml's x-app, as `docker run` flags.
HARDENING = (
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges:true",
    "--read-only",
    "--tmpfs=/tmp:mode=1777",
    "--tmpfs=/tmp/metrics:uid=10001,gid=10001,mode=0700",
)


def log(message: str) -> None:
    print(f"docker-check: {message}", flush=True)


def run(args: list[str], *, check: bool = True, quiet: bool = False, **kwargs: Any) -> str:
    """Run a fixed command of this script; its output is returned (and shown unless quiet)."""
    done = subprocess.run(args, check=False, capture_output=True, text=True, **kwargs)  # noqa: S603
    output = (done.stdout + done.stderr).strip()
    if check and done.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        raise RuntimeError(f"`{' '.join(args[:4])} ...` failed ({done.returncode}):\n{tail}")
    if output and not quiet:
        print(output, flush=True)
    return str(done.stdout).strip()


def container_logs(name: str, tail: str = "all") -> str:
    """What the container wrote to stdout and stderr, in order."""
    done = subprocess.run(  # noqa: S603
        ["docker", "logs", "--tail", tail, name],  # noqa: S607
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return done.stdout


def docker(*args: str, check: bool = True, quiet: bool = True) -> str:
    # The legacy builder: this machine's CLI has no buildx, and BuildKit would try to pull the
    # Dockerfile's `# syntax=` frontend from a registry.
    return run(
        ["docker", *args], check=check, quiet=quiet, env={**os.environ, "DOCKER_BUILDKIT": "0"}
    )


# --- 1. the engine ---------------------------------------------------------------------------


def apt_install(*packages: str) -> None:
    log(f"installing {', '.join(packages)} from Debian's packages")
    run(["apt-get", "update", "-qq"], quiet=True)
    run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", *packages],
        quiet=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def docker_succeeds(*args: str) -> bool:
    done = subprocess.run(["docker", *args], check=False, capture_output=True)  # noqa: S603, S607
    return done.returncode == 0


def engine_answers() -> bool:
    return shutil.which("docker") is not None and docker_succeeds("version")


def ensure_engine() -> None:
    if engine_answers():
        return
    if shutil.which("dockerd") is None:
        apt_install("docker.io")
    log("starting dockerd --iptables=false (log: /var/log/dockerd.log); it keeps running")
    with open("/var/log/dockerd.log", "ab") as out:
        subprocess.Popen(
            ["dockerd", "--iptables=false"],  # noqa: S607
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + ENGINE_WAIT_S
    while not engine_answers():
        if time.monotonic() > deadline:
            raise RuntimeError("dockerd did not answer within 60 s: see /var/log/dockerd.log")
        time.sleep(1)


# --- 2. the stand-in base --------------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (read, never written anywhere)."""
    sources = [*Path("/etc/apt/sources.list.d").glob("*.sources"), Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and not words[1].rstrip("/").endswith("-security"):
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if "://" in w)
    raise RuntimeError("no Debian mirror found in /etc/apt: cannot debootstrap")


def mounts_under(root: Path) -> list[str]:
    lines = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    return sorted(
        (m for line in lines if (m := line.split()[1]).startswith(f"{root}/")), reverse=True
    )


def remove_tree(root: Path) -> None:
    """Unmount what debootstrap may have left mounted (/proc, /sys) before deleting anything."""
    for mount in mounts_under(root):
        run(["umount", "--lazy", mount], check=False, quiet=True)
    run(["rm", "-rf", "--one-file-system", str(root)], check=False, quiet=True)


def ensure_base() -> None:
    if docker_succeeds("image", "inspect", BASE_TAG):
        log(f"base: reusing {BASE_TAG}")
        return
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="docker-check-base-"))
    rootfs = workdir / "rootfs"
    try:
        log(f"base: debootstrap --variant=minbase {DEBIAN_SUITE} with python3.11 (a few minutes)")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                # python3.11-venv needs python3.11-distutils, which only python3-distutils
                # provides: debootstrap's resolver does not follow that on its own.
                "--include=python3.11,python3.11-venv,python3-distutils,ca-certificates",
                DEBIAN_SUITE,
                str(rootfs),
                debian_mirror(),
            ],
            quiet=True,
        )
        for mount in mounts_under(rootfs):
            run(["umount", "--lazy", mount], check=False, quiet=True)
        (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3.11")
        (rootfs / "usr/local/bin/python3").symlink_to("/usr/bin/python3.11")
        # pip inside the build must trust what this machine trusts to reach the package index.
        shutil.copyfile(CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        # apt's downloads and package lists: not needed in an image that installs nothing.
        apt = [*rootfs.glob("var/cache/apt/archives/*.deb"), *rootfs.glob("var/lib/apt/lists/*_*")]
        for leftover in apt:
            leftover.unlink()
        tar = subprocess.Popen(  # noqa: S603
            ["tar", "-C", str(rootfs), "--exclude=./proc/*", "--exclude=./sys/*", "-c", "."],  # noqa: S607
            stdout=subprocess.PIPE,
        )
        run(
            [
                "docker",
                "import",
                "--change",
                "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                "ENV LANG=C.UTF-8",
                # Debian's pip in a venv: point it at the CA bundle copied above.
                "--change",
                "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
                "--change",
                'CMD ["python3"]',
                "--message",
                "stand-in for python:3.11-slim-bookworm (scripts/docker_check.py)",
                "-",
                BASE_TAG,
            ],
            stdin=tar.stdout,
            quiet=True,
        )
        if tar.wait() != 0:
            raise RuntimeError("tar of the stand-in root failed")
    finally:
        remove_tree(workdir)
    log(f"base: {BASE_TAG} made in {time.monotonic() - started:.0f} s")


# --- 3. the image ----------------------------------------------------------------------------


def pip_config(key: str) -> str:
    """A setting of this machine's pip: the environment first, then pip's own config files."""
    value = os.environ.get(f"PIP_{key.upper().replace('-', '_')}", "")
    if not value and shutil.which("pip"):
        value = run(["pip", "config", "get", f"global.{key}"], check=False, quiet=True)
    return value


def index_build_args() -> list[str]:
    """The package index the build must reach, as this machine's pip or uv is set up to.

    Only network indexes cross into the build (a file:// index is not there); nothing is
    written down, so the index's address stays out of the repository and the image.
    """
    args: list[str] = []
    index = (
        pip_config("index-url")
        or os.environ.get("UV_DEFAULT_INDEX", "")
        or os.environ.get("UV_INDEX_URL", "")
    )
    if index.startswith(("http://", "https://")):
        args += ["--build-arg", f"PIP_INDEX_URL={index}"]
    if trusted := pip_config("trusted-host"):
        args += ["--build-arg", f"PIP_TRUSTED_HOST={trusted}"]
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        if proxy in os.environ:  # predefined build arguments of Docker's
            args += ["--build-arg", f"{proxy}={os.environ[proxy]}"]
    return args


def build_image() -> None:
    started = time.monotonic()
    log(f"image: docker build --network host --build-arg PYTHON_BASE={BASE_TAG} -t {IMAGE_TAG}")
    common = ["--network", "host", "--build-arg", f"PYTHON_BASE={BASE_TAG}", "--label", LABEL]
    # The builder stage gets a tag of its own first, so that it is kept as build cache (the
    # dependencies' layer) and the one it replaces can be told apart and dropped; the full
    # build then reuses it.
    builder = ["--target", "builder", "--tag", f"{IMAGE_TAG}-builder"]
    docker("build", *common, *index_build_args(), *builder, str(ROOT))
    docker("build", *common, *index_build_args(), "--tag", IMAGE_TAG, str(ROOT))
    # The images these replaced lost their tags: drop them, keep the last ones as build cache.
    docker("image", "prune", "--force", "--filter", f"label={LABEL}", check=False)
    log(f"image: built in {time.monotonic() - started:.0f} s")


# --- 4. the run's own names and credentials --------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def free_redis_db() -> int:
    """An empty Redis database of this machine's: arq's job keys (arq:job:<id>) carry no
    prefix, so this run's jobs must not meet another run's with the same order id."""
    for db in range(15, 0, -1):
        client = Redis.from_url(f"{REDIS_BASE}/{db}")
        try:
            if client.dbsize() == 0:
                return db
        finally:
            client.close()
    raise RuntimeError("no empty Redis database (1..15) for this run")


@dataclass
class CheckRun:
    """Everything this run creates, so that ``cleanup`` removes exactly that."""

    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    redis_db: int = 0
    api_port: int = 0
    secrets_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="docker-check-"))
    )
    containers: list[str] = field(default_factory=list)
    redis_users: list[str] = field(default_factory=list)
    rabbitmq_users: list[str] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> str:
        return f"orders_dc_{self.run_id}"

    @property
    def app_role(self) -> str:
        return f"orders_dc_{self.run_id}_app"

    @property
    def user_prefix(self) -> str:
        return f"dc-{self.run_id}-"

    @property
    def settings(self) -> dict[str, str]:
        """Production settings shared by every container of this run."""
        return {
            "ENVIRONMENT": "production",
            "REDIS_PREFIX": f"dc:{self.run_id}:",
            "ARQ_QUEUE": f"arq:dc:{self.run_id}:queue",
            "RABBITMQ_EXCHANGE": f"orders.dc.{self.run_id}",
            "RABBITMQ_QUEUE": f"new_order.dc.{self.run_id}",
            "CONSUMER_METRICS_PORT": "0",
            "WORKER_METRICS_PORT": "0",
            "DB_POOL_SIZE": "2",
            "DB_MAX_OVERFLOW": "2",
            "WEB_CONCURRENCY": "1",
        }

    def password(self, name: str) -> str:
        return self.passwords.setdefault(name, secrets.token_urlsafe(24))

    def owner_url(self) -> str:
        return make_url(PG_URL).set(database=self.database).render_as_string(hide_password=False)

    def app_url(self) -> str:
        url = make_url(self.owner_url()).set(username=self.app_role, password=self.password("db"))
        return url.render_as_string(hide_password=False)

    def redis_url(self, role: str) -> str:
        host = REDIS_BASE.split("://", 1)[1]
        return f"redis://{self.user_prefix}{role}:{self.password(f'redis-{role}')}@{host}/{self.redis_db}"

    def rabbitmq_url(self, role: str) -> str:
        host = AMQP_ADMIN_URL.rsplit("@", 1)[1]
        return f"amqp://{self.user_prefix}{role}:{self.password(f'rabbitmq-{role}')}@{host}"

    def env_file(self, name: str, values: Mapping[str, str]) -> Path:
        """Secrets go to the container through a 0600 file, not the command line."""
        path = self.secrets_dir / f"{name}.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
        path.chmod(0o600)
        return path


def create_redis_users(check: CheckRun) -> None:
    """deploy/redis-users.sh's rules, under this run's user names, on the shared Redis."""
    env = {
        **check.settings,
        "REDIS_USER_PREFIX": check.user_prefix,
        **{f"REDIS_{role.upper()}_PASSWORD": check.password(f"redis-{role}") for role in ROLES},
    }
    lines = run(["sh", str(ROOT / "deploy/redis-users.sh")], quiet=True, env={**os.environ, **env})
    admin = Redis.from_url(f"{REDIS_BASE}/0")
    try:
        for line in lines.splitlines():
            _, name, *rules = line.split()
            check.redis_users.append(name)
            admin.execute_command("ACL", "SETUSER", name, *rules)  # type: ignore[no-untyped-call]
    finally:
        admin.close()


def create_rabbitmq_users(check: CheckRun) -> None:
    """deploy/rabbitmq_users.py's permissions, applied with rabbitmqctl to the shared broker."""
    rules = permissions(check.settings["RABBITMQ_EXCHANGE"], check.settings["RABBITMQ_QUEUE"])
    for role, rule in rules.items():
        name = check.user_prefix + role
        check.rabbitmq_users.append(name)
        # The password on stdin, not on a command line that `ps` shows.
        run(
            ["rabbitmqctl", "-q", "add_user", name],
            input=check.password(f"rabbitmq-{role}"),
            quiet=True,
        )
        run(["rabbitmqctl", "-q", "set_permissions", "-p", "/", name, *rule], quiet=True)


async def create_app_role_if_migrations_do_not(check: CheckRun) -> None:
    """DB_APP_ROLE is the migrations' job. Code from before it gets the role made here, with
    the grants it promises (read and write the tables), so the run still uses no superuser."""
    if "db_app_role" in Settings.__struct_fields__:
        found = await _fetchval(PG_URL, "SELECT 1 FROM pg_roles WHERE rolname = $1", check.app_role)
        if not found:
            raise RuntimeError(f"the migrations did not create DB_APP_ROLE {check.app_role}")
        return
    log("this code has no DB_APP_ROLE setting yet: docker-check creates the app role itself")
    role = check.app_role
    for statement in (
        f"CREATE ROLE {role} LOGIN PASSWORD '{check.password('db')}'",
        f"GRANT CONNECT ON DATABASE {check.database} TO {role}",
    ):
        await _execute(PG_URL, statement)
    for statement in (
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ):
        await _execute(check.owner_url(), statement)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _fetchval(url: str, query: str, *args: object) -> object:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        return await connection.fetchval(query, *args)
    finally:
        await connection.close()


# --- 5. the containers and the smoke ---------------------------------------------------------


def start(check: CheckRun, role: str, command: list[str], env: Mapping[str, str]) -> str:
    name = f"docker-check-{check.run_id}-{role}"
    check.containers.append(name)
    docker(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--label",
        LABEL,
        *HARDENING,
        "--env-file",
        str(check.env_file(role, {**check.settings, **env})),
        IMAGE_TAG,
        *command,
    )
    return name


def migrate(check: CheckRun) -> None:
    """As the database owner, the way docker-compose.yml's `migrate` service runs."""
    name = start(
        check,
        "migrate",
        ["python", "-m", "migrations"],
        {
            "DATABASE_URL": check.owner_url(),
            "DB_APP_ROLE": check.app_role,
            "DB_APP_PASSWORD": check.password("db"),
        },
    )
    status = docker("wait", name)
    if status != "0":
        raise RuntimeError(f"migrations exited {status}:\n{container_logs(name)}")
    asyncio.run(create_app_role_if_migrations_do_not(check))


def start_processes(check: CheckRun) -> dict[str, str]:
    def env(role: str) -> dict[str, str]:
        return {
            "DATABASE_URL": check.app_url(),
            "REDIS_URL": check.redis_url(role),
            "RABBITMQ_URL": check.rabbitmq_url(role),
        }

    check.api_port = free_port()
    api_env = {
        **env("api"),
        # Signing material and the metrics token go to the api alone, as in docker-compose.yml.
        "JWT_SECRET": check.password("jwt"),
        "METRICS_TOKEN": check.password("metrics"),
        "UVICORN_HOST": HOST,
        "UVICORN_PORT": str(check.api_port),
    }
    return {
        "api": start(check, "api", [], api_env),  # the image's own CMD
        "consumer": start(check, "consumer", ["python", "-m", "workers.consumer"], env("consumer")),
        "worker": start(check, "worker", ["python", "-m", "workers.worker"], env("worker")),
    }


def wait_until(what: str, seconds: float, probe: Any) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if result := probe():
                return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {seconds:.0f} s")
        time.sleep(1)  # the API allows RATE_LIMIT (100/minute) per client


def smoke(check: CheckRun, names: Mapping[str, str]) -> None:
    """A client's first minutes, through the API container."""
    api = f"http://{HOST}:{check.api_port}"
    with httpx.Client(base_url=api, timeout=10) as client:
        wait_until(
            "the API container answering /health", 60, lambda: client.get("/health").is_success
        )
        email, password = f"dc-{check.run_id}@example.com", secrets.token_urlsafe(16)
        expect(client.post("/register", json={"email": email, "password": password}), 201)
        token = expect(client.post("/token", data={"username": email, "password": password}), 200)
        client.headers["Authorization"] = f"Bearer {token['access_token']}"
        item = {"name": "docker-check", "quantity": 2, "price": "10.50"}
        order = expect(client.post("/orders", json={"items": [item], "total_price": "21.00"}), 201)
        read = expect(client.get(f"/orders/{order['id']}"), 200)
        if read["id"] != order["id"] or read["total_price"] != "21.00":
            raise RuntimeError(f"GET /orders/{order['id']} returned {read}")
        log(f"smoke: user registered, token issued, order {order['id']} created and read")
        started = time.monotonic()
        wait_until(
            "processed_at set by the worker container",
            PROCESSED_WAIT_S,
            lambda: expect(client.get(f"/orders/{order['id']}"), 200)["processed_at"],
        )
        log(f"smoke: processed_at set {time.monotonic() - started:.1f} s after creation")
    if f"Order {order['id']} processed" not in container_logs(names["worker"]):
        raise RuntimeError("the worker's log does not say it processed the order")
    wait_until(
        "the image's HEALTHCHECK reporting the API healthy",
        HEALTHY_WAIT_S,
        lambda: (
            docker("inspect", "--format", "{{.State.Health.Status}}", names["api"]) == "healthy"
        ),
    )
    for role, name in names.items():
        if docker("inspect", "--format", "{{.State.Running}}", name) != "true":
            raise RuntimeError(f"the {role} container stopped:\n{container_logs(name)}")
    log("smoke: passed (the worker logged the order; the API container reports healthy)")


def refused(what: str, attempt: Any, *errors: type[BaseException]) -> str:
    """Run ``attempt``; it must fail with one of ``errors`` (the credential lacks the right)."""
    try:
        attempt()
    except errors:
        return what
    raise RuntimeError(f"least privilege: {what} was allowed")


def least_privilege(check: CheckRun) -> None:
    """The credentials the containers ran with can do their work (the smoke) and no more."""
    from redis.exceptions import NoPermissionError  # noqa: PLC0415

    api, consumer, worker = (
        Redis.from_url(check.redis_url(r)) for r in ("api", "consumer", "worker")
    )
    prefix = check.settings["REDIS_PREFIX"]
    probes = [
        refused("Redis api: FLUSHDB", api.flushdb, NoPermissionError),
        refused("Redis api: CONFIG GET", lambda: api.config_get("*"), NoPermissionError),
        refused("Redis api: arq's job keys", lambda: api.get("arq:job:x"), NoPermissionError),
        refused("Redis consumer: the cache", lambda: consumer.get(f"{prefix}x"), NoPermissionError),
        refused("Redis api: SCAN", lambda: api.scan(0), NoPermissionError),
        refused("Redis api: SCRIPT FLUSH", api.script_flush, NoPermissionError),
        refused("Redis worker: FUNCTION LIST", worker.function_list, NoPermissionError),
    ]
    for client in (api, consumer, worker):
        client.close()
    # Even root in the container cannot change its root filesystem (read-only).
    for name in check.containers[1:]:  # api, consumer, worker (migrate has exited)
        probes.append(
            refused(
                f"{name.rsplit('-', 1)[1]} container: root writing /app",
                lambda n=name: docker("exec", "--user", "0", n, "touch", "/app/probe"),
                RuntimeError,
            )
        )
    probes.append(
        refused(
            "PostgreSQL app role: CREATE TABLE",
            lambda: asyncio.run(_execute(check.app_url(), "CREATE TABLE dc_probe (id int)")),
            asyncpg.InsufficientPrivilegeError,
        )
    )

    async def consumer_publishes() -> None:
        import aio_pika  # noqa: PLC0415

        connection = await aio_pika.connect(check.rabbitmq_url("consumer"))
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(check.settings["RABBITMQ_EXCHANGE"])
            await exchange.publish(aio_pika.Message(b"{}"), routing_key="new_order")

    import aiormq  # noqa: PLC0415

    probes.append(
        refused(
            "RabbitMQ consumer: publish new_order",
            lambda: asyncio.run(consumer_publishes()),
            aiormq.exceptions.ChannelAccessRefused,
        )
    )
    log(f"least privilege: refused as expected: {'; '.join(probes)}")


def expect(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.status_code}"
            f" (expected {status}): {response.text[:500]}"
        )
    return response.json()


# --- 6. cleanup ------------------------------------------------------------------------------


def cleanup(check: CheckRun) -> None:
    """Best effort, step by step: one failing step must not keep the others from running."""
    steps: list[tuple[str, Any]] = [
        ("containers", lambda: [docker("rm", "--force", n, check=False) for n in check.containers]),
        ("database", lambda: asyncio.run(_drop_database(check))),
        ("redis", lambda: _clean_redis(check)),
        ("rabbitmq", lambda: _clean_rabbitmq(check)),
        ("secrets", lambda: shutil.rmtree(check.secrets_dir, ignore_errors=True)),
    ]
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - report and go on with the rest
            log(f"cleanup of {what} failed: {exc!r}")


async def _drop_database(check: CheckRun) -> None:
    await drop_database(check.owner_url())
    await _execute(PG_URL, f"DROP ROLE IF EXISTS {check.app_role}")


def _clean_redis(check: CheckRun) -> None:
    admin = Redis.from_url(f"{REDIS_BASE}/{check.redis_db}")
    try:
        for name in check.redis_users:
            admin.acl_deluser(name)
        if check.redis_db:
            # This database was empty when the run began: what is in it now is the run's.
            for pattern in (f"{check.settings['REDIS_PREFIX']}*", "arq:*"):
                for key in admin.scan_iter(match=pattern, count=1000):
                    admin.delete(key)
    finally:
        admin.close()


def _clean_rabbitmq(check: CheckRun) -> None:
    for name in check.rabbitmq_users:
        run(["rabbitmqctl", "-q", "delete_user", name], check=False, quiet=True)

    async def delete_topology() -> None:
        import aio_pika  # noqa: PLC0415 - only here, after the containers are gone

        settings = Settings(
            environment="test",
            rabbitmq_exchange=check.settings["RABBITMQ_EXCHANGE"],
            rabbitmq_queue=check.settings["RABBITMQ_QUEUE"],
        )
        connection = await aio_pika.connect(AMQP_ADMIN_URL)
        async with connection:
            await Topology(settings).delete(await connection.channel())

    asyncio.run(delete_topology())


# --- main ------------------------------------------------------------------------------------


def stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    log(f"{what}: {time.monotonic() - started:.0f} s")


def main() -> int:
    signal.signal(signal.SIGTERM, stop_on_signal)
    started = time.monotonic()
    ensure_engine()
    ensure_base()
    build_image()
    check = CheckRun()
    try:
        check.redis_db = free_redis_db()
        log(
            f"run {check.run_id}: database {check.database}, Redis db {check.redis_db},"
            f" queue {check.settings['RABBITMQ_QUEUE']}"
        )
        create_redis_users(check)
        create_rabbitmq_users(check)
        with timed("migrations container"):
            migrate(check)
        names = start_processes(check)
        smoke(check, names)
        least_privilege(check)
    except (RuntimeError, OSError, KeyboardInterrupt) as exc:
        log(f"FAILED: {exc}")
        for name in check.containers:
            print(f"--- docker logs {name} (last 30 lines)", flush=True)
            print(container_logs(name, tail="30"), flush=True)
        return 1
    finally:
        cleanup(check)
    log(f"passed in {time.monotonic() - started:.0f} s; its containers, data and users are removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
