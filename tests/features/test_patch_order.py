"""PATCH /orders/{order_id}: the status machine, ownership, and a cache that never lags."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from features.patch_order import handler as patch_order_handler
from features.patch_order.queries import move_status
from shared.messaging.events import ORDER_STATUS_CHANGED, OrderStatusChangedEvent
from shared.models import Order, OrderStatus, OutboxEvent
from shared.orders.cache import OrderCache
from shared.orders.view import OrderView
from shared.settings import Settings
from tests.accounts import Account
from tests.events import bound_queue, events_of
from tests.orders import Client, create_order, evict

PATHS = {
    "PENDING": [],
    "PAID": ["PAID"],
    "SHIPPED": ["PAID", "SHIPPED"],
    "CANCELED": ["CANCELED"],
}


async def order_in(client: Client, account: Account, status: str) -> str:
    order_id = str((await create_order(client, account))["id"])
    for step in PATHS[status]:
        response = await client.patch(
            f"/orders/{order_id}", json={"status": step}, headers=account.headers
        )
        assert response.status_code == 200, response.text
    return order_id


@pytest.mark.parametrize(
    ("start", "target"),
    [("PENDING", "PAID"), ("PAID", "SHIPPED"), ("PENDING", "CANCELED"), ("PAID", "CANCELED")],
)
async def test_allowed_moves_succeed(
    client: Client, alice: Account, start: str, target: str
) -> None:
    order_id = await order_in(client, alice, start)
    response = await client.patch(
        f"/orders/{order_id}/", json={"status": target}, headers=alice.headers
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == target
    assert body["updated_at"] > body["created_at"]


@pytest.mark.parametrize(
    ("start", "target"),
    [
        ("PENDING", "SHIPPED"),
        ("PAID", "PENDING"),
        ("SHIPPED", "PAID"),
        ("SHIPPED", "CANCELED"),
        ("SHIPPED", "PENDING"),
        ("CANCELED", "PAID"),
        ("CANCELED", "PENDING"),
        ("CANCELED", "SHIPPED"),
    ],
)
async def test_forbidden_moves_are_409_naming_the_current_status(
    client: Client, alice: Account, start: str, target: str
) -> None:
    order_id = await order_in(client, alice, start)
    response = await client.patch(
        f"/orders/{order_id}", json={"status": target}, headers=alice.headers
    )
    assert response.status_code == 409
    assert response.json()["current_status"] == start
    assert start in response.json()["detail"]
    unchanged = await client.get(f"/orders/{order_id}", headers=alice.headers)
    assert unchanged.json()["status"] == start


@pytest.mark.parametrize("status", ["PENDING", "PAID", "SHIPPED", "CANCELED"])
async def test_setting_the_same_status_is_a_200_no_op(
    client: Client, alice: Account, status: str
) -> None:
    order_id = await order_in(client, alice, status)
    before = (await client.get(f"/orders/{order_id}", headers=alice.headers)).json()
    response = await client.patch(
        f"/orders/{order_id}", json={"status": status}, headers=alice.headers
    )
    assert response.status_code == 200
    assert response.json() == before


@pytest.mark.parametrize(
    "body", [{}, {"status": "paid"}, {"status": "DELIVERED"}, {"status": 1}, []]
)
async def test_a_bad_body_is_422(client: Client, alice: Account, body: object) -> None:
    order_id = await order_in(client, alice, "PENDING")
    response = await client.patch(f"/orders/{order_id}", json=body, headers=alice.headers)
    assert response.status_code == 422


@pytest.mark.parametrize("warm", [True, False])
async def test_another_user_cannot_patch_and_learns_nothing(
    client: Client, alice: Account, bob: Account, settings: Settings, warm: bool
) -> None:
    order_id = await order_in(client, alice, "PENDING")
    if not warm:
        await evict(settings, order_id)
    response = await client.patch(
        f"/orders/{order_id}", json={"status": "CANCELED"}, headers=bob.headers
    )
    assert response.status_code == 404
    mine = await client.get(f"/orders/{order_id}", headers=alice.headers)
    assert mine.json()["status"] == "PENDING"


async def test_patching_an_unknown_order_is_404(client: Client, alice: Account) -> None:
    response = await client.patch(
        f"/orders/{uuid.uuid4()}", json={"status": "PAID"}, headers=alice.headers
    )
    assert response.status_code == 404


@pytest.mark.parametrize("warm", [True, False])
async def test_the_next_get_after_a_patch_shows_the_new_status(
    client: Client, alice: Account, settings: Settings, warm: bool
) -> None:
    order_id = await order_in(client, alice, "PENDING")
    if warm:
        await client.get(f"/orders/{order_id}", headers=alice.headers)
    else:
        await evict(settings, order_id)
    await client.patch(f"/orders/{order_id}", json={"status": "PAID"}, headers=alice.headers)
    response = await client.get(f"/orders/{order_id}", headers=alice.headers)
    assert response.json()["status"] == "PAID"


async def test_a_stale_view_written_after_a_newer_one_is_refused(
    client: Client, alice: Account, settings: Settings
) -> None:
    """The race, step by step: a GET that missed read PENDING, then PATCH cached PAID, then
    the GET tries to fill the cache with what it read. The cache must keep PAID."""
    order_id = await order_in(client, alice, "PENDING")
    stale = (await client.get(f"/orders/{order_id}", headers=alice.headers)).json()
    await client.patch(f"/orders/{order_id}", json={"status": "PAID"}, headers=alice.headers)

    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        cache = OrderCache(redis, settings.redis_prefix, settings.cache_ttl_seconds)
        await cache.cache_order(msgspec.convert(stale, OrderView))
    finally:
        await redis.aclose()
    response = await client.get(f"/orders/{order_id}", headers=alice.headers)
    assert response.headers["x-cache"] == "HIT"
    assert response.json()["status"] == "PAID"


async def test_racing_cold_reads_never_outlive_a_patch(
    client: Client, alice: Account, settings: Settings
) -> None:
    """Many cold GETs race each PATCH; once the PATCH has returned, every GET shows it."""
    order_ids = [await order_in(client, alice, "PENDING") for _ in range(15)]
    for order_id in order_ids:
        await evict(settings, order_id)

    async def read(order_id: str) -> None:
        await client.get(f"/orders/{order_id}", headers=alice.headers)

    async def patch_then_check(order_id: str) -> str:
        readers = [asyncio.create_task(read(order_id)) for _ in range(4)]
        response = await client.patch(
            f"/orders/{order_id}", json={"status": "PAID"}, headers=alice.headers
        )
        assert response.status_code == 200
        await asyncio.gather(*readers)
        after = await client.get(f"/orders/{order_id}", headers=alice.headers)
        return str(after.json()["status"])

    statuses = await asyncio.gather(*[patch_then_check(o) for o in order_ids])
    assert statuses == ["PAID"] * len(order_ids)


async def test_a_patch_wins_in_the_cache_even_when_the_order_was_stamped_ahead_of_the_database(
    client: Client, alice: Account, settings: Settings, engine: AsyncEngine
) -> None:
    """``created_at`` and the first ``updated_at`` come from the API's clock; a later write's
    ``updated_at`` comes from the database's. Were the API's clock ahead, a PATCH stamped by
    the database would look older than the view it replaces, and the cache (which keeps the
    newest) would go on serving the old status. ``updated_at`` only ever moves forward."""
    order_id = str((await create_order(client, alice))["id"])
    ahead = datetime.now(UTC) + timedelta(hours=1)
    async with engine.begin() as conn:
        await conn.execute(
            update(Order)
            .where(Order.id == uuid.UUID(order_id))
            .values(created_at=ahead, updated_at=ahead)
        )
    await evict(settings, order_id)
    seen = await client.get(f"/orders/{order_id}", headers=alice.headers)
    assert seen.headers["X-Cache"] == "MISS"  # now cached with the clock-ahead updated_at

    moved = await client.patch(
        f"/orders/{order_id}", json={"status": "PAID"}, headers=alice.headers
    )
    assert moved.status_code == 200
    assert moved.json()["updated_at"] > seen.json()["updated_at"]
    read = await client.get(f"/orders/{order_id}", headers=alice.headers)
    assert read.headers["X-Cache"] == "HIT"
    assert read.json()["status"] == "PAID"


# Its events on the bus: a queue bound by routing key, as another service would bind one.


@pytest.fixture
async def status_events(
    settings: Settings, rabbitmq: aio_pika.abc.AbstractChannel
) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    async with bound_queue(rabbitmq, settings.rabbitmq_exchange, ORDER_STATUS_CHANGED) as queue:
        yield queue


async def test_a_move_publishes_one_order_status_changed_event(
    client: Client, alice: Account, status_events: aio_pika.abc.AbstractQueue
) -> None:
    order_id = await order_in(client, alice, "PENDING")

    response = await client.patch(
        f"/orders/{order_id}", json={"status": "PAID"}, headers=alice.headers
    )

    body = response.json()
    events = await events_of(status_events, order_id)
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, OrderStatusChangedEvent)
    assert (str(event.order_id), event.user_id) == (order_id, body["user_id"])
    assert (event.from_, event.to) == (OrderStatus.PENDING, OrderStatus.PAID)
    assert event.updated_at == datetime.fromisoformat(body["updated_at"])
    assert abs(event.occurred_at - datetime.now(UTC)) < timedelta(seconds=10)


@pytest.mark.parametrize(
    ("start", "target", "code"), [("PAID", "PAID", 200), ("PENDING", "SHIPPED", 409)]
)
async def test_a_no_op_or_refused_patch_publishes_nothing(
    client: Client,
    alice: Account,
    status_events: aio_pika.abc.AbstractQueue,
    start: str,
    target: str,
    code: int,
) -> None:
    order_id = await order_in(client, alice, start)
    await events_of(status_events, order_id, within=1.0)  # the moves that led there

    response = await client.patch(
        f"/orders/{order_id}", json={"status": target}, headers=alice.headers
    )

    assert response.status_code == code
    assert await events_of(status_events, order_id) == []


async def test_a_move_rolled_back_stages_no_event(
    settings: Settings, engine: AsyncEngine, client: Client, alice: Account
) -> None:
    """The event is staged by the move's own statement: undone with it, nothing to publish."""
    order_id = uuid.UUID(await order_in(client, alice, "PENDING"))

    async with engine.connect() as conn:
        transaction = await conn.begin()
        moved = await move_status(conn, order_id, alice.id, OrderStatus.PAID, [OrderStatus.PENDING])
        assert moved is not None  # it moved, and staged its event...
        await transaction.rollback()  # ...then the transaction failed

    async with engine.connect() as conn:
        status = await conn.scalar(select(Order.status).where(Order.id == order_id))
        staged = await conn.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(
                OutboxEvent.order_id == order_id,
                OutboxEvent.event_type == ORDER_STATUS_CHANGED,
            )
        )
    assert (status, staged) == (OrderStatus.PENDING, 0)


async def test_racing_moves_publish_one_event_each_with_the_status_each_moved_from(
    live: httpx.AsyncClient,
    alice: Account,
    rabbitmq: aio_pika.abc.AbstractChannel,
    settings: Settings,
) -> None:
    """PAID and CANCELED sent together from PENDING: whatever the order, each move's ``from``
    is the status it really left, and a refused or no-op one publishes nothing."""
    async with bound_queue(rabbitmq, settings.rabbitmq_exchange, ORDER_STATUS_CHANGED) as queue:
        order_id = (await create_order(live, alice))["id"]
        responses = await asyncio.gather(
            *(
                live.patch(f"/orders/{order_id}", json={"status": s}, headers=alice.headers)
                for s in ("PAID", "CANCELED", "PAID")
            )
        )
        final = (await live.get(f"/orders/{order_id}", headers=alice.headers)).json()["status"]
        events = await events_of(queue, order_id)

    assert {r.status_code for r in responses} <= {200, 409}
    chain = [(e.from_, e.to) for e in events if isinstance(e, OrderStatusChangedEvent)]
    assert len(chain) == len(events)
    chain.sort(key=lambda move: move[0] != OrderStatus.PENDING)
    assert chain[0][0] == OrderStatus.PENDING
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chain))
    assert chain[-1][1] == OrderStatus(final)


async def test_a_move_made_between_the_update_and_the_read_is_followed_not_refused(
    client: Client,
    alice: Account,
    monkeypatch: pytest.MonkeyPatch,
    status_events: aio_pika.abc.AbstractQueue,
) -> None:
    """PENDING → SHIPPED matches nothing; if another request moves the order to PAID before the
    handler reads it to say why, the rule now allows the move: it is made, not refused."""
    order_id = await order_in(client, alice, "PENDING")
    calls = 0

    async def move_then_pay(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        moved = await move_status(*args, **kwargs)
        if calls == 1:  # a PENDING → PAID commits right after this UPDATE missed (the handler's
            # connection is in autocommit: the statement commits as another request's would)
            await args[0].execute(
                update(Order).where(Order.id == uuid.UUID(order_id)).values(status=OrderStatus.PAID)
            )
        return moved

    monkeypatch.setattr(patch_order_handler, "move_status", move_then_pay)
    response = await client.patch(
        f"/orders/{order_id}", json={"status": "SHIPPED"}, headers=alice.headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "SHIPPED"
    assert calls == 2
    events = await events_of(status_events, order_id)
    assert [(e.from_, e.to) for e in events if isinstance(e, OrderStatusChangedEvent)] == [
        (OrderStatus.PAID, OrderStatus.SHIPPED)
    ]
