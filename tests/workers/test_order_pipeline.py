"""End to end through the API: POST /orders, and the background job sets processed_at."""

from __future__ import annotations

from typing import Any

from shared.settings import Settings
from tests.accounts import Account
from tests.apps import with_settings
from tests.orders import Client
from tests.pipeline import StartConsumer, StartWorker, wait_for


async def test_created_order_gets_processed_at_through_consumer_and_worker(
    settings: Settings,
    client: Client,
    alice: Account,
    start_consumer: StartConsumer,
    start_worker: StartWorker,
) -> None:
    # The app's own topology and arq queue; only the job's 2 s wait is shortened.
    fast = with_settings(settings, process_order_delay_s=0.05)
    await start_worker(fast)
    await start_consumer(fast)
    body = {"items": [{"name": "A", "quantity": 1, "price": "1.00"}]}
    created = await client.post("/orders", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    assert created.json()["processed_at"] is None

    async def processed() -> dict[str, Any] | None:
        response = await client.get(f"/orders/{created.json()['id']}", headers=alice.headers)
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        return order if order["processed_at"] is not None else None

    order = await wait_for(processed, every=0.1)
    assert order["processed_at"] >= order["created_at"]
    assert order["status"] == "PENDING"
