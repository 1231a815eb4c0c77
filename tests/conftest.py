"""Fixtures: every run gets its own database, Redis prefix and RabbitMQ names, and removes them.

Nothing is mocked: the app talks to the real PostgreSQL, Redis and RabbitMQ of the machine
(or those named by TEST_DATABASE_URL / TEST_REDIS_URL / TEST_RABBITMQ_URL).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app import create_app
from migrations.admin import migrate
from shared.services import services_of
from shared.settings import Settings
from tests.accounts import Account, make_account
from tests.apps import StartApp
from tools.harness.cleanup import remove_run
from tools.harness.names import isolated

RUN_ID = secrets.token_hex(4)


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    """Settings for this run: isolated names everywhere, cheap bcrypt, generous limits."""
    machine = Settings(
        environment="test",
        database_url=os.environ.get(
            "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        ),
        redis_url=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        rabbitmq_url=os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        jwt_secret=secrets.token_urlsafe(32),
        bcrypt_rounds=4,
        rate_limit="100000/minute",
        token_rate_limit="100000/minute",
        cors_allow_origins="https://shop.example",
        consumer_metrics_port=0,  # processes started by tests share the host: no fixed ports
        # The session's database fills with orders nobody processes (the API tests'): workers
        # started by tests leave them alone. The reconciler's tests use a database of their own.
        reconcile_after_s=24 * 3600,
        worker_metrics_port=0,
        metrics_token=secrets.token_urlsafe(32),
    )
    test_settings = isolated(machine, RUN_ID, "test")
    migrate(test_settings.database_url)
    yield test_settings
    asyncio.run(remove_run(test_settings))


@pytest.fixture(scope="session")
async def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app) as test_client:
        assert await services_of(app).bus.wait_ready(within=10), "RabbitMQ did not connect"
        yield test_client


@pytest.fixture
async def start_app() -> AsyncIterator[StartApp]:
    """Run extra apps (their own settings, extra routes) for one test; all stop after it."""
    async with AsyncExitStack() as stack:

        async def start(extra_app: Litestar) -> AsyncTestClient[Litestar]:
            return await stack.enter_async_context(AsyncTestClient(extra_app))

        yield start


@pytest.fixture
async def alice(client: AsyncTestClient[Litestar]) -> Account:
    return await make_account(client)


@pytest.fixture
async def bob(client: AsyncTestClient[Litestar]) -> Account:
    return await make_account(client)
