"""GET /orders/events as clients use it: real uvicorn APIs, the real consumer feeding the log
from RabbitMQ, Redis and PostgreSQL; streams read over HTTP (tests/sse.py)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from shared.accounts.signing_keys import signing_keys
from shared.messaging.bus import EventBus
from shared.messaging.events import ORDER_STATUS_CHANGED, OrderStatusChangedEvent
from shared.orders.status import OrderStatus
from shared.settings import Settings
from tests.accounts import Account, make_account
from tests.apps import with_settings
from tests.orders import create_order
from tests.pipeline import StartConsumer
from tests.processes import Process, RunModule, run_module, start_api
from tests.sse import END, EventStream, open_stream
from tests.tokens import sign, valid_claims
from tools.harness.faults import StartLink, via

__all__ = ["run_module"]  # the fixture, imported for pytest

KEEPALIVE_S = 0.3
LEASE_S = KEEPALIVE_S * 2 + 1  # OrderStreams.lease_ms


@pytest.fixture
def sse_settings(pipeline_settings: Settings) -> Settings:
    return with_settings(pipeline_settings, sse_keepalive_s=KEEPALIVE_S)


@dataclass
class Api:
    client: httpx.AsyncClient
    process: Process


StartEventsApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start_events_api(
    run_module: RunModule, start_consumer: StartConsumer
) -> AsyncIterator[StartEventsApi]:
    """``await start(settings)``: a uvicorn API on ``settings``, with the consumer feeding its
    logs (one consumer per settings)."""
    clients: list[httpx.AsyncClient] = []
    consumers: set[str] = set()

    async def start(settings: Settings, name: str = "api") -> Api:
        process, base = await start_api(run_module, settings, name)
        if settings.rabbitmq_queue not in consumers:
            consumers.add(settings.rabbitmq_queue)
            await start_consumer(settings)
        client = httpx.AsyncClient(base_url=base, timeout=30)
        clients.append(client)
        return Api(client, process)

    yield start
    for client in clients:
        await client.aclose()


@pytest.fixture
async def api(start_events_api: StartEventsApi, sse_settings: Settings) -> Api:
    return await start_events_api(sse_settings)


async def publish_status_changes(
    bus: EventBus, account: Account, order_id: str, count: int
) -> list[str]:
    """``count`` order_status_changed events for one order, straight onto the bus (the outbox's
    path: confirmed publishes by event type), each with its own ``updated_at``; returns those."""
    base = datetime.now(UTC)
    stamps = []
    for n in range(count):
        updated = base + timedelta(microseconds=n + 1)
        event = OrderStatusChangedEvent(
            event_id=uuid.uuid4(),
            occurred_at=updated,
            order_id=uuid.UUID(order_id),
            user_id=account.id,
            from_=OrderStatus.PENDING,
            to=OrderStatus.PAID,
            updated_at=updated,
        )
        await bus.publish(msgspec.json.encode(event), str(event.event_id), ORDER_STATUS_CHANGED)
        stamps.append(updated)
    return [msgspec.json.decode(msgspec.json.encode(s)) for s in stamps]


async def created_order(api: Api, account: Account, stream: EventStream) -> dict[str, Any]:
    """An order made through the API, once its ``order_created`` reached ``stream``."""
    order = await create_order(api.client, account)
    created = await stream.next()
    assert (created.event, created.order) == ("order_created", order)
    return order


async def test_an_order_created_then_paid_reaches_the_owners_stream(api: Api) -> None:
    alice = await make_account(api.client)
    async with open_stream(api.client, alice) as stream:
        order = await create_order(api.client, alice)
        created = await stream.next()
        assert created.event == "order_created"
        assert created.order == order
        paid = await api.client.patch(
            f"/orders/{order['id']}", json={"status": "PAID"}, headers=alice.headers
        )
        assert paid.status_code == 200
        changed = await stream.next()
        assert changed.event == "order_status_changed"
        assert changed.order == paid.json()
        assert changed.id is not None
        assert created.id is not None
        assert changed.id != created.id
    read = await api.client.get(f"/orders/{order['id']}", headers=alice.headers)
    assert read.json() == changed.order  # the data is the order as GET shows it


async def test_the_stream_is_an_event_stream_that_proxies_must_not_buffer(api: Api) -> None:
    alice = await make_account(api.client)
    async with open_stream(api.client, alice) as stream:
        headers = stream.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["cache-control"] == "no-store"
        assert headers["x-accel-buffering"] == "no"
        keepalive = await stream.next(within=KEEPALIVE_S * 5, comments=True)
        assert keepalive.comment == "keepalive"


async def test_a_stream_needs_a_bearer_token(api: Api) -> None:
    assert (await api.client.get("/orders/events")).status_code == 401
    refused = await api.client.get("/orders/events", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert refused.json()["status_code"] == 401


async def test_two_users_orders_changing_at_once_never_cross(api: Api) -> None:
    alice, bob = await make_account(api.client), await make_account(api.client)
    async with open_stream(api.client, alice) as alices, open_stream(api.client, bob) as bobs:
        orders = await asyncio.gather(
            *(create_order(api.client, owner) for owner in (alice, bob) * 5)
        )
        got_alice = await alices.events(5)
        got_bob = await bobs.events(5)
        assert {m.order["user_id"] for m in got_alice} == {alice.id}
        assert {m.order["user_id"] for m in got_bob} == {bob.id}
        assert {m.order["id"] for m in got_alice + got_bob} == {o["id"] for o in orders}
        for stream in (alices, bobs):  # and nothing more came
            with pytest.raises(TimeoutError):
                await stream.next(within=0.5)


async def test_a_reconnect_in_the_middle_of_a_burst_misses_none_and_repeats_none(
    api: Api, bus: EventBus
) -> None:
    alice = await make_account(api.client)
    async with open_stream(api.client, alice) as first:
        order = await created_order(api, alice, first)
        burst = asyncio.create_task(publish_status_changes(bus, alice, str(order["id"]), 500))
        received = await first.events(150, within=30)
    async with open_stream(api.client, alice, received[-1].id) as second:
        received += await second.events(500 - len(received), within=30)
        with pytest.raises(TimeoutError):
            await second.next(within=0.5)  # nothing twice, nothing more
    stamps = await burst
    ids = [m.id for m in received]
    assert len(set(ids)) == len(ids) == 500
    positions = [tuple(map(int, str(i).split("-"))) for i in ids]
    assert positions == sorted(positions)
    assert [m.order["updated_at"] for m in received] == stamps  # every change, in order


async def test_a_last_event_id_the_log_no_longer_reaches_starts_with_reset(
    start_events_api: StartEventsApi, sse_settings: Settings, bus: EventBus
) -> None:
    api: Api = await start_events_api(with_settings(sse_settings, sse_log_length=5))
    alice = await make_account(api.client)
    async with open_stream(api.client, alice) as stream:
        order_id = str((await created_order(api, alice, stream))["id"])
        await publish_status_changes(bus, alice, order_id, 1)
        first = await stream.next()
        await publish_status_changes(bus, alice, order_id, 10)
        rest = await stream.events(10)
    async with open_stream(api.client, alice, rest[5].id) as resumed:  # still in the log
        assert [m.id for m in await resumed.events(4)] == [m.id for m in rest[6:]]
    async with open_stream(api.client, alice, first.id) as resumed:  # trimmed away
        reset = await resumed.next()
        assert reset.event == "reset"
        assert reset.id == rest[-1].id  # the stream goes on from the log's end
        await publish_status_changes(bus, alice, order_id, 1)
        live = await resumed.next()
        assert live.event == "order_status_changed"
    for unknown in ("garbage", "99999999999999-0", "1-0", "0-0"):
        async with open_stream(api.client, alice, unknown) as resumed:
            assert (await resumed.next()).event == "reset"


async def test_a_duplicate_bus_message_makes_one_entry(
    api: Api, bus: EventBus, sse_settings: Settings, redis: Redis
) -> None:
    alice = await make_account(api.client)
    async with open_stream(api.client, alice) as stream:
        order = await created_order(api, alice, stream)
        now = datetime.now(UTC)
        event = OrderStatusChangedEvent(
            event_id=uuid.uuid4(),
            occurred_at=now,
            order_id=uuid.UUID(order["id"]),
            user_id=alice.id,
            from_=OrderStatus.PENDING,
            to=OrderStatus.PAID,
            updated_at=now,
        )
        body = msgspec.json.encode(event)
        for _ in range(2):
            await bus.publish(body, str(event.event_id), ORDER_STATUS_CHANGED)
        assert (await stream.next()).event == "order_status_changed"
        with pytest.raises(TimeoutError):
            await stream.next(within=1.0)
    log = f"{sse_settings.redis_prefix}sse:log:{alice.id}"
    assert await redis.xlen(log) == 2  # order_created and one change


async def test_a_user_holds_at_most_five_streams_across_processes(
    start_events_api: StartEventsApi, sse_settings: Settings
) -> None:
    first: Api = await start_events_api(sse_settings, "api-1")
    second: Api = await start_events_api(sse_settings, "api-2")
    alice = await make_account(first.client)
    async with (
        contextlib_streams(first.client, alice, 2),
        contextlib_streams(second.client, alice, 3) as on_second,
    ):
        refused = await first.client.get("/orders/events", headers=alice.headers)
        assert refused.status_code == 429
        assert refused.json()["status_code"] == 429
        assert "Retry-After" in refused.headers
        await on_second[0].close()  # a closed stream frees its slot
        await wait_open(first.client, alice)
    bob = await make_account(first.client)
    async with contextlib_streams(second.client, bob, 5):
        second.process.send_signal(signal.SIGKILL)  # its leases are never released
        await second.process.wait()
        assert (await first.client.get("/orders/events", headers=bob.headers)).status_code == 429
        started = time.monotonic()
        await wait_open(first.client, bob)
        assert time.monotonic() - started < LEASE_S + 2


def contextlib_streams(
    client: httpx.AsyncClient, account: Account, count: int
) -> contextlib.AbstractAsyncContextManager[list[EventStream]]:
    @contextlib.asynccontextmanager
    async def streams() -> AsyncIterator[list[EventStream]]:
        async with contextlib.AsyncExitStack() as stack:
            opened = [
                await stack.enter_async_context(open_stream(client, account)) for _ in range(count)
            ]
            yield opened

    return streams()


async def wait_open(client: httpx.AsyncClient, account: Account, within: float = 10) -> None:
    """Until a new stream of ``account`` opens (then close it)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with client.stream("GET", "/orders/events", headers=account.headers) as response:
            if response.status_code == 200:
                return
        await asyncio.sleep(0.1)
    pytest.fail("no stream slot came free")


async def test_a_stream_ends_when_its_access_token_expires(
    api: Api, sse_settings: Settings
) -> None:
    alice = await make_account(api.client)
    keys = signing_keys(sse_settings.jwt_algorithm, sse_settings.jwt_secret, "", "")
    expires = int(time.time()) + 3
    token = sign(valid_claims(sse_settings, alice.id, exp=expires), keys)
    async with open_stream(api.client, token=token) as stream:
        assert await stream.next(within=10) is END
        assert abs(time.time() - expires) < 1.5


async def test_sigterm_ends_open_streams_and_the_process_promptly(api: Api) -> None:
    alice = await make_account(api.client)
    async with open_stream(api.client, alice) as one, open_stream(api.client, alice) as two:
        await one.next(within=KEEPALIVE_S * 5, comments=True)  # both are streaming
        api.process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down (its exit status says so).
        assert await asyncio.wait_for(api.process.wait(), 5) in (0, -signal.SIGTERM)
        assert await one.next(within=1) is END
        assert await two.next(within=1) is END


async def test_created_processed_paid_reach_a_stream_on_another_api_within_a_second_each(
    run_module: RunModule, sse_settings: Settings
) -> None:
    """Two API processes (the stream on one, POST and PATCH through the other), the consumer
    and the worker as processes: every change reaches the stream, in order, within 1 s."""
    await run_module("workers.consumer", sse_settings)
    await run_module("workers.worker", sse_settings)
    _, streaming_base = await start_api(run_module, sse_settings, "api-stream")
    _, writing_base = await start_api(run_module, sse_settings, "api-write")
    async with (
        httpx.AsyncClient(base_url=streaming_base, timeout=30) as streaming,
        httpx.AsyncClient(base_url=writing_base, timeout=30) as writing,
    ):
        alice = await make_account(writing)
        async with open_stream(streaming, alice) as stream:
            sent = time.time()
            order = await create_order(writing, alice)
            created = await stream.next(within=20)  # the consumer may still be starting
            assert (created.event, created.order) == ("order_created", order)
            processed = await stream.next(within=20)  # the worker too
            assert processed.event == "order_processed"
            assert processed.order["processed_at"] is not None
            done_at = datetime.fromisoformat(processed.order["processed_at"]).timestamp()
            assert processed.received - done_at < 1.0
            patched_at = time.time()
            paid = await writing.patch(
                f"/orders/{order['id']}", json={"status": "PAID"}, headers=alice.headers
            )
            assert paid.status_code == 200
            changed = await stream.next(within=5)
            assert (changed.event, changed.order) == ("order_status_changed", paid.json())
            assert changed.received - patched_at < 1.0
        # The first event's delay counts the processes starting up: measured again, warm.
        async with open_stream(streaming, alice) as stream:
            sent = time.time()
            await create_order(writing, alice)
            assert (await stream.next()).received - sent < 1.0


async def test_events_published_while_the_apis_redis_link_was_down_arrive_once(
    start_events_api: StartEventsApi, sse_settings: Settings, faults: StartLink
) -> None:
    """The listener loses its subscription (pub/sub is at most once: notices published
    meanwhile are gone); on resubscribing every stream reads the log, so they still arrive.
    (The keepalive is long here: its lease renewal would meet the outage and end the stream,
    which a client resumes from with its Last-Event-ID.)"""
    link = faults(sse_settings.redis_url)
    through_link = with_settings(
        sse_settings, redis_url=via(sse_settings.redis_url, link.port), sse_keepalive_s=60.0
    )
    await start_events_api(sse_settings, "consumer-side")  # the consumer: Redis directly
    api: Api = await start_events_api(through_link, "api-via-link")
    alice = await make_account(api.client)
    async with open_stream(api.client, alice) as stream:
        await created_order(api, alice, stream)
        link.down()
        later = await asyncio.gather(*(create_order(api.client, alice) for _ in range(3)))
        await asyncio.sleep(1)
        link.restore()
        got = await stream.events(3, within=15)
        assert sorted(m.order["id"] for m in got) == sorted(o["id"] for o in later)
        with pytest.raises(TimeoutError):
            await stream.next(within=1.0)
