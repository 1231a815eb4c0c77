"""The event pipeline in tests: waiting for it, orders as POST /orders stages them, the
in-process consumer, and the arq keys a test leaves behind."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import aio_pika
import pytest
from arq.worker import Worker
from redis.asyncio import Redis
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from features.create_order.queries import insert_order
from shared.messaging.events import NewOrderEvent, new_order_event
from shared.messaging.outbox import new_order_message
from shared.models import Order, User
from shared.orders.items import OrderItem
from shared.settings import Settings

ARQ_KEY_PREFIXES = ("arq:job:", "arq:result:", "arq:retry:", "arq:in-progress:")


async def wait_for(
    condition: Callable[[], Awaitable[Any]], *, within: float = 10.0, every: float = 0.05
) -> Any:
    """Poll until ``condition()`` is truthy and return it; fail the test after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(every)


async def delete_arq_keys(redis: Redis, job_ids: list[str]) -> None:
    keys = [prefix + job_id for job_id in job_ids for prefix in ARQ_KEY_PREFIXES]
    for start in range(0, len(keys), 1000):
        await redis.delete(*keys[start : start + 1000])


async def ready_count(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    """Messages waiting in ``queue`` (delivered but unacked ones are not counted)."""
    declared = await channel.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count
    return int(count or 0)


OrderFactory = Callable[[], Awaitable[NewOrderEvent]]


def order_factory(engine: AsyncEngine) -> OrderFactory:
    """Insert a user and a PENDING order with its staged outbox row, as POST /orders does."""

    async def make() -> NewOrderEvent:
        async with engine.begin() as conn:
            user_id = await conn.scalar(
                insert(User)
                .values(
                    email=f"worker-{uuid.uuid4().hex[:12]}@example.com", password_hash=b"x" * 60
                )
                .returning(User.id)
            )
            assert user_id is not None
            event = new_order_event(user_id=user_id, total_price=Decimal("1.00"))
            inserted = await insert_order(  # POST /orders' own statement: order and event
                conn,
                event,
                new_order_message(event),
                items=[OrderItem(name="A", quantity=1, price=Decimal("1.00"))],
                idempotency_key=None,
                fingerprint=None,
            )
            assert inserted is not None
            return event

    return make


@dataclass
class RunningConsumer:
    task: asyncio.Task[None]
    stop_event: asyncio.Event

    async def stop(self) -> None:
        """SIGTERM's path: stop consuming, let handlers finish, close; wait until it did."""
        self.stop_event.set()
        await asyncio.wait_for(asyncio.shield(self.task), 15)


StartConsumer = Callable[[Settings], Awaitable[RunningConsumer]]
StartWorker = Callable[[Settings], Awaitable[Worker]]


async def processed_at(engine: AsyncEngine, order_id: uuid.UUID) -> datetime | None:
    async with engine.connect() as conn:
        value: datetime | None = await conn.scalar(
            select(Order.processed_at).where(Order.id == order_id)
        )
    return value
