"""The publisher side of the pipeline: readiness through reconnects, confirmed publishing."""

from __future__ import annotations

import pytest

from shared.bus import EventBus
from shared.settings import Settings
from tests.apps import with_settings
from tests.faults import StartProxy, via
from tests.pipeline import wait_for


async def test_bus_is_not_ready_while_reconnecting_and_ready_again_after(
    pipeline_settings: Settings, tcp_proxy: StartProxy
) -> None:
    proxy = await tcp_proxy(pipeline_settings.rabbitmq_url)
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


async def test_publish_raises_when_no_queue_takes_the_message(bus: EventBus) -> None:
    with pytest.raises(ConnectionError, match="did not route"):
        await bus.publish(b"{}", message_id="nowhere", routing_key="no-queue-is-bound-to-this")
