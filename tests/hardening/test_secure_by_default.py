"""Issue 10's attacks, each tried the way an attacker would, each failing with default settings.

Forged tokens, pickled jobs, spoofed client addresses, cross-site text/plain posts, anonymous
metrics, /ready floods, bcrypt floods, leaking logs, an over-privileged database role, an ignored
Redis password and an unbounded dead-letter queue. A token in a cookie: tests/platform/.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import pickle
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg
import httpx
import msgspec
import pytest
from arq.constants import job_key_prefix, result_key_prefix
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app import create_app
from features.token.handler import _dummy_hash
from migrations.admin import drop_database
from shared.accounts.passwords import bcrypt_cost
from shared.accounts.signing_keys import signing_keys
from shared.db import asyncpg_dsn
from shared.http.client_address import client_host
from shared.messaging.bus import Topology
from shared.messaging.jobs import create_arq_redis, deserialize_job
from shared.models import User
from shared.redis import create_redis
from shared.settings import Settings
from tests.accounts import PASSWORD, make_account
from tests.apps import StartApp, metrics_headers, with_settings
from tests.pipeline import ready_count, wait_for
from tests.processes import START_WITHIN_S, RunModule, start_api
from tests.tokens import sign, valid_claims
from tools.harness.names import ROOT, environment
from tools.harness.processes import UVICORN_ARGS, free_port
from workers.worker import create_worker

Client = AsyncTestClient[Litestar]
PUBLISHED_DEV_SECRET = "dev-only-secret-change-me-in-production"
ORDER = {"items": [{"name": "Item 1", "quantity": 1, "price": "1.00"}]}


def own_prefix(settings: Settings, **changes: Any) -> Settings:
    """Settings whose rate-limit counters (and cache) no other test shares."""
    return with_settings(
        settings, redis_prefix=f"{settings.redis_prefix}sec-{secrets.token_hex(3)}:", **changes
    )


def forged_token(settings: Settings, user_id: int, secret: str) -> str:
    """Valid by every rule of the profile; only the key is the published one."""
    return sign(valid_claims(settings, user_id), signing_keys("HS256", secret, "", ""))


# --- 1. forgeable tokens -------------------------------------------------------------------


async def test_the_service_with_default_settings_refuses_to_start(tmp_path: Path) -> None:
    """No ENVIRONMENT, no JWT_SECRET (and no .env): production, so uvicorn never serves."""
    env = {k: v for k, v in os.environ.items() if k not in ("ENVIRONMENT", "JWT_SECRET")}
    env["PYTHONPATH"] = str(ROOT)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        *UVICORN_ARGS,
        "--port",
        "0",
        cwd=tmp_path,  # no .env here
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode != 0
    assert b"JWT_SECRET" in output


async def test_a_token_signed_with_the_published_development_secret_is_refused(
    settings: Settings, start_app: StartApp, client: Client
) -> None:
    """Even in development without a secret: the key is random per start, not a public string."""
    victim = await make_account(client)
    fields = {**msgspec.structs.asdict(settings), "environment": "development", "jwt_secret": ""}
    dev = await start_app(create_app(msgspec.convert(fields, Settings)))
    forged = {"Authorization": f"Bearer {forged_token(settings, victim.id, PUBLISHED_DEV_SECRET)}"}
    response = await dev.get(f"/orders/user/{victim.id}", headers=forged)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


# --- 2. code execution through Redis --------------------------------------------------------


class Canary:
    """Unpickling this creates a file: the proof that a payload was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def refused_jobs() -> float:
    value = REGISTRY.get_sample_value("orders_worker_jobs_total", {"outcome": "refused"})
    return value or 0.0


async def test_a_pickled_job_is_refused_without_running_anything(
    pipeline_settings: Settings, redis: Redis, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    job_id = f"attack:{uuid.uuid4().hex}"
    payload = pickle.dumps({"t": 1, "f": "process_order", "a": [Canary(canary)], "k": {}, "et": 0})
    before = refused_jobs()
    await redis.set(job_key_prefix + job_id, payload, ex=60)
    await redis.zadd(pipeline_settings.arq_queue, {job_id: time.time() * 1000})
    worker = create_worker(pipeline_settings, handle_signals=False)
    try:
        # What the worker's loop does with each job id it takes from the queue.
        await worker.run_job(job_id, int(time.time() * 1000))
        assert await redis.exists(result_key_prefix + job_id)  # recorded as failed
        assert not canary.exists()
        assert refused_jobs() == before + 1
        assert await redis.zscore(pipeline_settings.arq_queue, job_id) is None
    finally:
        await worker.pool.aclose()
        await redis.delete(job_key_prefix + job_id, result_key_prefix + job_id)


async def test_jobs_travel_as_json(pipeline_settings: Settings, redis: Redis) -> None:
    arq = create_arq_redis(pipeline_settings, max_connections=2)
    job_id = f"json:{uuid.uuid4().hex}"
    try:
        await arq.enqueue_job("process_order", "an-order-id", _job_id=job_id)
        raw = await redis.get(job_key_prefix + job_id)
        assert raw is not None
        assert msgspec.json.decode(raw)["a"] == ["an-order-id"]
        assert deserialize_job(raw)["f"] == "process_order"  # what the worker will read
    finally:
        await redis.delete(job_key_prefix + job_id)
        await redis.zrem(pipeline_settings.arq_queue, job_id)
        await arq.aclose()


# --- 3. client identity and the password budgets ---------------------------------------------


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    proxies = Settings(
        environment="development", trusted_proxies="10.0.0.0/8, 192.0.2.1"
    ).trusted_proxy_networks
    assert client_host("203.0.113.9", ["1.2.3.4"], proxies) == "203.0.113.9"
    assert client_host("192.0.2.1", ["1.2.3.4"], proxies) == "1.2.3.4"
    # the client's own entry (left) is not believed past the last untrusted hop
    assert client_host("10.0.0.2", ["6.6.6.6", "1.2.3.4", "10.0.0.7"], proxies) == "1.2.3.4"
    assert client_host("10.0.0.2", ["not-an-ip"], proxies) == "10.0.0.2"
    assert client_host("10.0.0.2", [], proxies) == "10.0.0.2"
    assert client_host("127.0.0.1", ["1.2.3.4"], ()) == "127.0.0.1"


async def test_rotating_x_forwarded_for_from_loopback_does_not_escape_the_token_limit(
    settings: Settings, run_module: RunModule
) -> None:
    """A real uvicorn process, run as the justfile runs it, with a 3/minute login budget."""
    guarded = own_prefix(settings, token_rate_limit="3/minute")
    _, base = await start_api(run_module, guarded, log="guarded-api")
    async with httpx.AsyncClient(base_url=base) as http:
        one_account = [
            (
                await http.post(
                    "/token",
                    data={"username": "victim@example.com", "password": f"guess-{n}"},
                    headers={"X-Forwarded-For": f"198.51.100.{n}"},
                )
            ).status_code
            for n in range(5)
        ]
        many_accounts = [
            (
                await http.post(
                    "/token",
                    data={"username": f"u{n}-{uuid.uuid4().hex[:6]}@example.com", "password": "x"},
                    headers={"X-Forwarded-For": f"203.0.113.{n}"},
                )
            ).status_code
            for n in range(4)
        ]
    assert one_account == [401, 401, 401, 429, 429]
    # the address already tried one account: three more distinct ones pass its budget
    assert many_accounts == [401, 401, 429, 429]


async def test_a_trusted_proxy_gives_each_client_its_own_budget(
    settings: Settings, run_module: RunModule
) -> None:
    behind = own_prefix(settings, token_rate_limit="2/minute", trusted_proxies="127.0.0.1")
    _, base = await start_api(run_module, behind, log="behind-proxy")
    async with httpx.AsyncClient(base_url=base) as http:

        async def spray(client_address: str) -> list[int]:
            return [
                (
                    await http.post(
                        "/token",
                        data={"username": f"{uuid.uuid4().hex[:8]}@example.com", "password": "x"},
                        headers={"X-Forwarded-For": client_address},
                    )
                ).status_code
                for _ in range(3)
            ]

        assert await spray("198.51.100.1") == [401, 401, 429]
        assert await spray("198.51.100.2") == [401, 401, 429]


async def test_one_accounts_failures_do_not_lock_out_the_other_users_of_an_address(
    settings: Settings, start_app: StartApp
) -> None:
    shared = await start_app(create_app(own_prefix(settings, token_rate_limit="3/minute")))
    alice = await make_account(shared)  # counts one account for the address
    bob = await make_account(shared)
    for _ in range(3):  # bob's third login attempt of the minute is his last
        await shared.post("/token", data={"username": bob.email, "password": "wrong-pass"})
    bob_again = await shared.post("/token", data={"username": bob.email, "password": PASSWORD})
    alice_again = await shared.post("/token", data={"username": alice.email, "password": PASSWORD})
    assert bob_again.status_code == 429
    assert alice_again.status_code == 200


async def test_register_counts_against_the_login_budget_per_address(
    settings: Settings, start_app: StartApp
) -> None:
    limited = await start_app(create_app(own_prefix(settings, token_rate_limit="2/minute")))
    statuses = [
        (
            await limited.post(
                "/register",
                json={"email": f"r-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD},
            )
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [201, 201, 429]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/token", {"data": {"username": "a@example.com", "password": "whatever-pass"}}),
        ("POST", "/token", {"data": {"grant_type": "refresh_token", "refresh_token": "x"}}),
        ("POST", "/register", {"json": {"email": "a@example.com", "password": "whatever-pass"}}),
        ("DELETE", "/users/me", {"json": {"password": "whatever-pass"}}),
    ],
)
async def test_password_routes_fail_closed_while_the_limiter_cannot_count(
    settings: Settings,
    start_app: StartApp,
    client: Client,
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    account = await make_account(client)
    no_redis = await start_app(
        create_app(with_settings(settings, redis_url="redis://127.0.0.1:1/0"))
    )
    headers = account.headers if method == "DELETE" else {}
    refused = await no_redis.request(method, path, headers=headers, **body)
    other = await no_redis.post("/orders", json=ORDER)  # no token: 401, not limited shut
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) > 0
    assert refused.json()["detail"]
    assert other.status_code == 401


# --- 4. JSON from a cross-site form ----------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_json_body_sent_as_another_type_is_415(
    client: Client, content_type: str | None
) -> None:
    account = await make_account(client)
    headers = {**account.headers}
    if content_type:
        headers["Content-Type"] = content_type
    response = await client.post("/orders", content=msgspec.json.encode(ORDER), headers=headers)
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("application/json")
    assert "application/json" in response.json()["detail"]
    listed = await client.get(f"/orders/user/{account.id}", headers=account.headers)
    assert listed.json() == []  # no order was made


async def test_json_with_a_charset_is_still_json(client: Client) -> None:
    account = await make_account(client)
    response = await client.post(
        "/orders",
        content=msgspec.json.encode(ORDER),
        headers={**account.headers, "Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201


# --- 5. secrets in logs ----------------------------------------------------------------------


async def test_a_database_error_during_register_logs_neither_the_email_nor_the_hash(
    settings: Settings, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """INSERTs wait behind a SHARE lock until the server's statement timeout cancels them."""
    email = f"secret-{uuid.uuid4().hex[:10]}@example.com"
    locker = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE users IN SHARE MODE")
            with caplog.at_level(logging.DEBUG):
                response = await client.post(
                    "/register", json={"email": email, "password": PASSWORD}
                )
    finally:
        await locker.close()
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert response.status_code == 503
    assert "57014" in logged  # the SQLSTATE of a cancelled statement is there
    assert email not in logged
    assert "$2b$" not in logged


# --- 6. ops endpoints -----------------------------------------------------------------------


async def test_metrics_are_404_on_the_public_port_without_a_metrics_token(
    settings: Settings, start_app: StartApp
) -> None:
    default = await start_app(create_app(with_settings(settings, metrics_token="")))
    anonymous = await default.get("/metrics")
    guessing = await default.get("/metrics", headers={"Authorization": "Bearer "})
    assert (anonymous.status_code, guessing.status_code) == (404, 404)
    assert "orders_api" not in anonymous.text + guessing.text


async def test_metrics_refuse_a_wrong_token(settings: Settings, client: Client) -> None:
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer not-the-metrics-token"})
    right = await client.get("/metrics", headers=metrics_headers(settings))
    assert (wrong.status_code, right.status_code) == (401, 200)


async def test_a_ready_flood_leaves_order_requests_answering(
    settings: Settings, run_module: RunModule, client: Client
) -> None:
    """Two pooled connections, 800 concurrent /ready: orders still get theirs.

    Before the probe was shared, each /ready took a pooled connection and orders waited
    behind them past the pool's timeout: most of the 20 were 503 on the development machine.
    """
    account = await make_account(client)
    small = own_prefix(settings, db_pool_size=2, db_max_overflow=0)
    # A keep-alive longer than the flood: under load the flood can outlast uvicorn's 5 s, and
    # a GET sent on a connection the server is closing as idle fails with ReadError, a
    # client-pool race that says nothing about the probe starving the database pool.
    _, base = await start_api(run_module, small, "ready-flood", "--timeout-keep-alive", "120")
    limits = httpx.Limits(max_connections=900)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:

        async def order() -> int:
            made = await http.post("/orders", json=ORDER, headers=account.headers)
            if made.status_code != 201:
                return made.status_code
            got = await http.get(f"/orders/{made.json()['id']}", headers=account.headers)
            return got.status_code

        async def probe() -> int:
            return (await http.get("/ready")).status_code

        flood = [probe() for _ in range(800)]
        orders = [order() for _ in range(20)]
        results = await asyncio.gather(*orders, *flood)
    order_statuses, ready_statuses = results[:20], results[20:]
    assert order_statuses == [200] * 20
    # /ready itself may say 503 while the process is this busy; it must answer, though.
    assert set(ready_statuses) <= {200, 503}


# --- 7. password endpoints ------------------------------------------------------------------


async def test_a_full_bcrypt_queue_is_a_prompt_503(
    settings: Settings, run_module: RunModule
) -> None:
    """One hash at a time allowed (cost 12, a quarter second each): a burst gets 503s."""
    slow = own_prefix(settings, bcrypt_rounds=12, bcrypt_queue_size=1)
    _, base = await start_api(run_module, slow, log="bcrypt-queue")
    form = {"username": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "wrong-pass"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        responses = await asyncio.gather(*(http.post("/token", data=form) for _ in range(6)))
    statuses = sorted(r.status_code for r in responses)
    busy = [r for r in responses if r.status_code == 503]
    assert statuses[0] == 401
    assert busy, statuses
    assert all(int(r.headers["retry-after"]) > 0 for r in busy)
    assert all(r.json()["detail"] for r in busy)


async def test_a_login_rehashes_a_password_made_at_another_cost(
    settings: Settings, start_app: StartApp, client: Client, engine: AsyncEngine
) -> None:
    account = await make_account(client)  # cost 4, the suite's setting

    async def stored_cost() -> int | None:
        async with engine.connect() as conn:
            stored = await conn.scalar(select(User.password_hash).where(User.id == account.id))
        return bcrypt_cost(stored) if stored else None

    assert await stored_cost() == settings.bcrypt_rounds
    raised = await start_app(create_app(own_prefix(settings, bcrypt_rounds=5)))
    first = await raised.post("/token", data={"username": account.email, "password": PASSWORD})
    assert first.status_code == 200
    assert await stored_cost() == 5
    again = await raised.post("/token", data={"username": account.email, "password": PASSWORD})
    assert again.status_code == 200


def test_the_dummy_check_for_unknown_emails_runs_at_the_current_cost() -> None:
    assert bcrypt_cost(_dummy_hash(5)) == 5
    assert bcrypt_cost(_dummy_hash(6)) == 6


async def test_a_taken_email_is_refused_before_any_bcrypt_work(
    settings: Settings, start_app: StartApp, client: Client
) -> None:
    """At cost 16 a hash takes seconds here; the 409 must not wait for one."""
    account = await make_account(client)
    costly = await start_app(create_app(own_prefix(settings, bcrypt_rounds=16)))
    started = time.perf_counter()
    taken = await costly.post("/register", json={"email": account.email, "password": PASSWORD})
    elapsed = time.perf_counter() - started
    assert taken.status_code == 409
    assert elapsed < 1.0


# --- 8. least privilege ---------------------------------------------------------------------


@pytest.fixture
async def app_role_database(settings: Settings) -> AsyncIterator[tuple[str, str, str]]:
    """A database of its own, migrated by `python -m migrations` with DB_APP_ROLE set:
    (owner URL, app URL, role). The role and the database are removed afterwards."""
    role = f"orders_app_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    owner_url = make_url(settings.database_url).set(
        database=f"{make_url(settings.database_url).database}_role"
    )
    owner = owner_url.render_as_string(hide_password=False)
    app_url = owner_url.set(username=role, password=password).render_as_string(hide_password=False)
    env = {
        **environment(settings),
        "DATABASE_URL": owner,
        "DB_APP_ROLE": role,
        "DB_APP_PASSWORD": password,
    }
    try:
        for _ in range(2):  # the second run updates the existing role
            migrated = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "migrations",
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(migrated.communicate(), 60)
            assert migrated.returncode == 0, output.decode()
        yield owner, app_url, role
    finally:
        await drop_database(owner)
        admin = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await admin.close()


async def test_the_app_works_end_to_end_as_the_least_privileged_role(
    settings: Settings, start_app: StartApp, app_role_database: tuple[str, str, str]
) -> None:
    _, app_url, role = app_role_database
    as_role = await start_app(create_app(own_prefix(settings, database_url=app_url)))
    account = await make_account(as_role)
    made = await as_role.post("/orders", json=ORDER, headers=account.headers)
    assert made.status_code == 201, made.text
    order_id = made.json()["id"]
    paid = await as_role.patch(
        f"/orders/{order_id}", json={"status": "PAID"}, headers=account.headers
    )
    listed = await as_role.get(f"/orders/user/{account.id}", headers=account.headers)
    assert paid.status_code == 200
    assert [o["id"] for o in listed.json()] == [order_id]
    conn = await asyncpg.connect(asyncpg_dsn(app_url))
    try:
        assert await conn.fetchval("SELECT current_user") == role
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE orders",
        "ALTER TABLE orders ADD COLUMN x int",
        "CREATE TABLE stolen (x int)",
        "TRUNCATE users",
        "SELECT * FROM alembic_version",
        "UPDATE alembic_version SET version_num = 'x'",
        "CREATE ROLE intruder",
        "DROP TRIGGER IF EXISTS users_notify_deleted ON users",
    ],
)
async def test_the_app_role_can_do_nothing_but_read_and_write_rows(
    app_role_database: tuple[str, str, str], statement: str
) -> None:
    _, app_url, _ = app_role_database
    conn = await asyncpg.connect(asyncpg_dsn(app_url))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def redis_acl_user(settings: Settings, redis: Redis) -> AsyncIterator[tuple[str, str]]:
    """A Redis ACL user for this run: (name, password); deleted afterwards."""
    name, password = f"orders-test-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    await redis.acl_setuser(
        name,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"],
    )
    try:
        yield name, password
    finally:
        await redis.acl_deluser(name)


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 6379}"
    return urlunsplit(parts._replace(netloc=netloc))


async def test_every_redis_client_logs_in_with_the_urls_credentials(
    settings: Settings,
    pipeline_settings: Settings,
    start_app: StartApp,
    redis: Redis,
    redis_acl_user: tuple[str, str],
) -> None:
    """The local Redis lets anyone in as ``default``: only WHOAMI shows who a client is."""
    user, password = redis_acl_user
    acl_settings = with_settings(
        pipeline_settings, redis_url=with_credentials(settings.redis_url, user, password)
    )

    async def connections_as_user() -> int:
        clients = await redis.client_list()
        return sum(1 for c in clients if c.get("user") == user)

    api = await start_app(create_app(acl_settings))
    ready = await api.get("/ready")  # the app's client: cache and rate limiter
    assert ready.json()["checks"]["redis"] == "ok"
    assert await connections_as_user() >= 1
    arq = create_arq_redis(acl_settings, max_connections=2)
    worker = create_worker(acl_settings, handle_signals=False)
    wrong = create_redis(with_credentials(settings.redis_url, user, "wrong-password"))
    try:
        assert await arq.acl_whoami() == user  # the consumer's enqueue
        assert await worker.pool.acl_whoami() == user  # the worker
        with pytest.raises(AuthenticationError):
            await wrong.ping()
    finally:
        await arq.aclose()
        await worker.pool.aclose()
        await wrong.aclose()


async def test_the_dead_letter_queue_keeps_only_the_newest_messages(
    pipeline_settings: Settings, rabbitmq: aio_pika.abc.AbstractChannel
) -> None:
    bounded = with_settings(pipeline_settings, dead_letter_max_length=3)
    topology = Topology(bounded)
    await topology.declare(rabbitmq)
    dlx = await rabbitmq.get_exchange(topology.dead_exchange)
    for n in range(5):
        await dlx.publish(aio_pika.Message(f"junk {n}".encode()), routing_key="")
    await wait_for(lambda: _count_is(rabbitmq, topology.dead_queue, 3))
    dead = await rabbitmq.get_queue(topology.dead_queue)
    bodies = []
    for _ in range(3):
        message = await dead.get(timeout=5)
        bodies.append(message.body.decode())
        await message.ack()
    assert bodies == ["junk 2", "junk 3", "junk 4"]


async def _count_is(channel: aio_pika.abc.AbstractChannel, queue: str, expected: int) -> bool:
    return await ready_count(channel, queue) == expected


# --- 9. the signing key only where it signs (issue 18) --------------------------------------


def _without_signing_material(settings: Settings, **changes: Any) -> Settings:
    """Production, RS256 and neither JWT_SECRET nor JWT_PRIVATE_KEY: what no API may start on."""
    return with_settings(
        settings,
        environment="production",
        jwt_secret="",
        jwt_algorithm="RS256",
        jwt_private_key="",
        **changes,
    )


async def _metrics_answer(host: str, port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as client:
            return (await client.get(f"http://{host}:{port}/metrics")).status_code == 200
    except httpx.TransportError:
        return False


async def test_the_processes_that_sign_nothing_start_in_production_without_a_signing_key(
    pipeline_settings: Settings, run_module: RunModule, tmp_path: Path
) -> None:
    consumer_port, worker_port = free_port(), free_port()
    settings = _without_signing_material(
        pipeline_settings, consumer_metrics_port=consumer_port, worker_metrics_port=worker_port
    )
    for module in ("migrations", "workers.queue_status"):
        one_shot = await run_module(module, settings, log=module)
        exit_code = await asyncio.wait_for(one_shot.wait(), START_WITHIN_S)
        assert exit_code == 0, (tmp_path / f"{module}.log").read_text()
    consumer = await run_module("workers.consumer", settings, log="consumer")
    worker = await run_module("workers.worker", settings, log="worker")
    for port in (consumer_port, worker_port):  # each serves its metrics: it started
        await wait_for(functools.partial(_metrics_answer, "127.0.0.1", port), within=START_WITHIN_S)
    assert consumer.returncode is None, (tmp_path / "consumer.log").read_text()
    assert worker.returncode is None, (tmp_path / "worker.log").read_text()


async def test_the_api_still_refuses_to_start_without_its_signing_key(
    pipeline_settings: Settings, run_module: RunModule, tmp_path: Path
) -> None:
    api = await run_module(
        "uvicorn",
        _without_signing_material(pipeline_settings),
        *UVICORN_ARGS,
        "--port",
        str(free_port()),
        log="api",
    )
    assert await asyncio.wait_for(api.wait(), START_WITHIN_S) != 0
    assert "JWT_SECRET" in (tmp_path / "api.log").read_text()


async def test_the_consumers_and_workers_metrics_listen_on_loopback_only_by_default(
    pipeline_settings: Settings, run_module: RunModule
) -> None:
    """127.0.0.2 is this machine too: a listener on every interface would answer there."""
    consumer_port, worker_port = free_port(), free_port()
    settings = with_settings(
        pipeline_settings, consumer_metrics_port=consumer_port, worker_metrics_port=worker_port
    )
    assert settings.metrics_host == "127.0.0.1"
    await run_module("workers.consumer", settings, log="consumer")
    await run_module("workers.worker", settings, log="worker")
    for port in (consumer_port, worker_port):
        await wait_for(functools.partial(_metrics_answer, "127.0.0.1", port), within=START_WITHIN_S)
        assert not await _metrics_answer("127.0.0.2", port)


async def _acl(redis: Redis, *args: str) -> Any:
    return await redis.execute_command("ACL", *args)  # type: ignore[no-untyped-call]


def _acl_users(prefix: str, queue: str, user_prefix: str) -> dict[str, list[str]]:
    """deploy/redis-users.sh's users, as ACL SETUSER arguments by role."""
    env = {
        "REDIS_API_PASSWORD": "api-pw",
        "REDIS_CONSUMER_PASSWORD": "consumer-pw",
        "REDIS_WORKER_PASSWORD": "worker-pw",
        "REDIS_PREFIX": prefix,
        "ARQ_QUEUE": queue,
        "REDIS_USER_PREFIX": user_prefix,
    }
    done = subprocess.run(  # noqa: S603
        ["sh", str(ROOT / "deploy/redis-users.sh")],  # noqa: S607
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    users = {}
    for line in done.stdout.splitlines():
        _, name, *rules = line.split()
        users[name.removeprefix(user_prefix)] = [name, *rules]
    return users


@pytest.mark.parametrize(
    "command",
    [
        ("SCAN", "0"),
        ("KEYS", "*"),
        ("RANDOMKEY",),
        ("SCRIPT", "FLUSH"),
        ("SCRIPT", "KILL"),
        ("FUNCTION", "LIST"),
        ("FUNCTION", "FLUSH"),
        ("FCALL", "f", "0"),
        ("FLUSHDB",),
        ("FLUSHALL",),
        ("CONFIG", "GET", "*"),
    ],
    ids=" ".join,
)
async def test_the_apps_redis_users_may_not_reach_past_their_keys(
    settings: Settings, redis: Redis, command: tuple[str, ...]
) -> None:
    users = _acl_users(settings.redis_prefix, settings.arq_queue, f"h4-{secrets.token_hex(3)}-")
    try:
        for rules in users.values():
            await _acl(redis, "SETUSER", *rules)
        for name, *_ in users.values():
            answer = await _acl(redis, "DRYRUN", name, *command)
            assert "no permissions" in answer.decode(), (name, command, answer)
    finally:
        for name, *_ in users.values():
            await redis.acl_deluser(name)


@pytest.mark.parametrize(
    ("user", "key", "allowed"),
    [
        ("api", "{prefix}order:x", True),
        ("api", "arq:job:process_order:x", False),  # arq's keys: the consumer's and worker's
        ("consumer", "arq:job:process_order:x", True),
        ("consumer", "{prefix}order:x", False),  # the cache: the api's and worker's
        ("worker", "{prefix}order:x", True),
        ("worker", "arq:job:process_order:x", True),
        ("worker", "other:order:x", False),
        ("consumer", "{prefix}sse:log:1", True),  # it feeds the users' event logs
        ("api", "{prefix}sse:log:1", True),
    ],
)
async def test_each_redis_user_reaches_only_its_own_keys(
    settings: Settings, redis: Redis, user: str, key: str, *, allowed: bool
) -> None:
    users = _acl_users(settings.redis_prefix, settings.arq_queue, f"h4-{secrets.token_hex(3)}-")
    try:
        for rules in users.values():
            await _acl(redis, "SETUSER", *rules)
        answer = await _acl(
            redis, "DRYRUN", users[user][0], "GET", key.format(prefix=settings.redis_prefix)
        )
        assert (answer == b"OK") is allowed, answer
    finally:
        for name, *_ in users.values():
            await redis.acl_deluser(name)


@pytest.mark.parametrize(
    ("user", "command", "allowed"),
    [
        ("consumer", "PUBLISH", True),  # the event logs' notices
        ("api", "SUBSCRIBE", True),
        ("worker", "PUBLISH", False),
        ("worker", "SUBSCRIBE", False),
    ],
)
async def test_only_the_event_log_notices_channel_is_open_to_pub_sub(
    settings: Settings, redis: Redis, user: str, command: str, *, allowed: bool
) -> None:
    users = _acl_users(settings.redis_prefix, settings.arq_queue, f"h4-{secrets.token_hex(3)}-")
    channel = f"{settings.redis_prefix}sse:notices"
    try:
        for rules in users.values():
            await _acl(redis, "SETUSER", *rules)
        name = users[user][0]
        args = (channel, "x") if command == "PUBLISH" else (channel,)
        answer = await _acl(redis, "DRYRUN", name, command, *args)
        assert (answer == b"OK") is allowed, answer
        other = await _acl(redis, "DRYRUN", name, command, "elsewhere", *args[1:])
        assert other != b"OK", other  # no other channel
    finally:
        for name, *_ in users.values():
            await redis.acl_deluser(name)


async def test_the_apps_redis_users_may_still_run_the_apps_scripts(
    pipeline_settings: Settings, start_app: StartApp, redis: Redis
) -> None:
    """The limiter's and the order cache's scripts: EVALSHA, then SCRIPT LOAD on a miss.

    The server's script cache is shared with other runs (no SCRIPT FLUSH here), so the load
    on a miss is checked with ACL DRYRUN for every user, the scripts' use end to end.
    """
    users = _acl_users(
        pipeline_settings.redis_prefix, pipeline_settings.arq_queue, f"h4-{secrets.token_hex(3)}-"
    )
    for user_rules in users.values():
        await _acl(redis, "SETUSER", *user_rules)
    name = users["api"][0]
    try:
        for user, *_ in users.values():
            for command in (("SCRIPT", "LOAD", "return 1"), ("EVALSHA", "0" * 40, "0")):
                assert await _acl(redis, "DRYRUN", user, *command) == b"OK"
        api = await start_app(
            create_app(
                with_settings(
                    pipeline_settings,
                    redis_url=with_credentials(pipeline_settings.redis_url, name, "api-pw"),
                )
            )
        )
        account = await make_account(api)  # /register and /token: the limiter's script
        response = await api.post("/orders", json=ORDER, headers=account.headers)
        assert response.status_code == 201, response.text
        read = await api.get(f"/orders/{response.json()['id']}", headers=account.headers)
        assert read.status_code == 200  # the order cache's script
    finally:
        for user, *_ in users.values():
            await redis.acl_deluser(user)
