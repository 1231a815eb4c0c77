"""The publisher side of the pipeline: readiness through reconnects, confirmed publishing."""

from __future__ import annotations

import asyncio
import random

import aio_pika
import pytest

from shared.messaging.bus import EventBus, Topology
from shared.messaging.events import NEW_ORDER, ORDER_PROCESSED, ORDER_STATUS_CHANGED
from shared.settings import Settings
from tests.apps import with_settings
from tests.pipeline import wait_for
from tools.harness.faults import StartLink, via


async def test_bus_is_not_ready_while_reconnecting_and_ready_again_after(
    pipeline_settings: Settings, faults: StartLink
) -> None:
    proxy = faults(pipeline_settings.rabbitmq_url)
    bus = EventBus(
        with_settings(
            pipeline_settings,
            rabbitmq_url=via(pipeline_settings.rabbitmq_url, proxy.port),
        )
    )
    await bus.start()
    try:
        assert await bus.wait_ready(within=10)
        proxy.refusing = True
        proxy.cut()

        async def not_ready() -> bool:
            return not bus.ready

        await wait_for(not_ready, within=5)
        with pytest.raises(ConnectionError):
            await bus.publish(b"{}", message_id="while-down")

        proxy.refusing = False

        assert await bus.wait_ready(within=15)
        await bus.publish(b"{}", message_id="after-reconnect")  # confirmed on the new channel
    finally:
        await bus.stop()


async def test_a_new_order_no_queue_takes_raises_so_the_outbox_keeps_it(
    bus: EventBus, pipeline_settings: Settings, rabbitmq: aio_pika.abc.AbstractChannel
) -> None:
    """``new_order`` is ``mandatory``: without our queues (the consumer's, the event logs'
    feed's) it is not delivered."""
    for name in (pipeline_settings.rabbitmq_queue, Topology(pipeline_settings).feed_queue):
        queue = await rabbitmq.get_queue(name)
        await queue.unbind(pipeline_settings.rabbitmq_exchange, routing_key=NEW_ORDER)

    with pytest.raises(ConnectionError, match="did not route"):
        await bus.publish(b"{}", message_id="nowhere", routing_key=NEW_ORDER)


@pytest.mark.parametrize("event_type", [ORDER_STATUS_CHANGED, ORDER_PROCESSED])
async def test_other_events_are_confirmed_with_no_queue_bound_for_them(
    bus: EventBus, event_type: str
) -> None:
    """Other services bind queues for them when they want them: until then the broker confirms
    and drops them, rather than the sweeper retrying them forever."""
    await bus.publish(b"{}", message_id="to-the-exchange", routing_key=event_type)


async def test_stopping_the_bus_mid_connect_leaves_no_task_behind(
    pipeline_settings: Settings,
) -> None:
    """A stop during the first connect must end aio-pika's reconnection task too.

    That task swallows cancellation and loops ("Connection attempt cancelled. Reconnecting"),
    so an app stopped while still connecting kept its event loop from ever closing: the test
    suite hung now and then in an app's shutdown.
    """
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # TCP accepted, not one AMQP byte back

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    bus = EventBus(
        with_settings(pipeline_settings, rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{port}/")
    )
    before = asyncio.all_tasks()
    try:
        await bus.start()
        await asyncio.sleep(0.3)  # inside the connect: TCP accepted, no AMQP answer
        await asyncio.wait_for(bus.stop(), 5)
        await asyncio.sleep(0.1)
        left = {t for t in asyncio.all_tasks() - before if not t.done()}
        assert not left, [t.get_name() for t in left]
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_a_bus_stopped_at_any_point_of_its_start_leaves_no_close_pending(
    pipeline_settings: Settings,
) -> None:
    """Stopped anywhere in its connect, channel set-up or declarations (an app stopping right
    after it started), the bus waits for the tasks aiormq starts to finish a close.

    Left pending, they are collected later as "Task was destroyed but it is pending" and an
    unawaited ``FutureStore.reject_all``, which fails whichever test is running then (seen in CI
    under load): about one stop in twenty did that before ``shared.bus.close``.
    """
    closing_names = {
        "Connection._on_reader_done.<locals>.close_writer_task",
        "FutureStore.reject_all",
    }
    rng = random.Random(18)
    left_pending = 0
    for _ in range(60):
        bus = EventBus(pipeline_settings)
        await bus.start()
        await asyncio.sleep(rng.uniform(0, 0.03))
        await bus.stop()
        left_pending += sum(
            1
            for task in asyncio.all_tasks()
            if not task.done() and getattr(task.get_coro(), "__qualname__", None) in closing_names
        )
        await asyncio.sleep(0.05)  # let any leftover finish before the next round counts
    assert left_pending == 0
