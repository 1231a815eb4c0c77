"""End to end through the API: POST /orders, and the background job sets processed_at.

With ORDER_SERVICE_URL set (``just docker-smoke`` sets it), the same walk runs against the API
at that address, whose consumer and worker already run (there: the containers).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.accounts import make_account
from tests.apps import with_settings
from tests.orders import Client
from tests.pipeline import StartConsumer, StartWorker, wait_for


@pytest.fixture
async def api(
    settings: Settings, client: Client, start_consumer: StartConsumer, start_worker: StartWorker
) -> AsyncIterator[httpx.AsyncClient]:
    """ORDER_SERVICE_URL's API, or the test's own app with a consumer and worker in process."""
    if url := os.environ.get("ORDER_SERVICE_URL"):
        async with httpx.AsyncClient(base_url=url, timeout=10) as remote:
            yield remote
        return
    # The app's own topology and arq queue; only the job's 2 s wait is shortened.
    fast = with_settings(settings, process_order_delay_s=0.05)
    await start_worker(fast)
    await start_consumer(fast)
    yield client


async def test_created_order_gets_processed_at_through_consumer_and_worker(
    api: httpx.AsyncClient,
) -> None:
    alice = await make_account(api)
    body = {"items": [{"name": "A", "quantity": 1, "price": "1.00"}]}
    created = await api.post("/orders", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    assert created.json()["processed_at"] is None

    async def processed() -> dict[str, Any] | None:
        response = await api.get(f"/orders/{created.json()['id']}", headers=alice.headers)
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        return order if order["processed_at"] is not None else None

    # Polled gently: a production API allows 100 requests a minute from one client.
    order = await wait_for(processed, within=30, every=0.5)
    assert order["processed_at"] >= order["created_at"]
    assert order["status"] == "PENDING"
