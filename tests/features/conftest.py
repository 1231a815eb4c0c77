"""The event pipeline's fixtures, for the job slices (process_order, reconcile_orders,
purge_sessions, sweep_outbox): the ones tests/workers defines, imported so both suites run
them alike. And the API as a real server, for the races of the session slices."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from shared.settings import Settings
from tests.processes import running_modules, start_api
from tests.workers.conftest import (  # noqa: F401 - fixtures, registered by import
    _remove_arq_keys,
    bus,
    engine,
    faults,
    new_order,
    own_database,
    pipeline_settings,
    rabbitmq,
    redis,
    start_consumer,
    start_worker,
)


@pytest.fixture(scope="session")
async def live(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the API under uvicorn, on the session's database: requests sent together
    really run together there (the test client runs one request at a time, to its end)."""
    async with running_modules(tmp_path_factory.mktemp("live")) as run:
        _, base = await start_api(run, settings, "live-api")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client
