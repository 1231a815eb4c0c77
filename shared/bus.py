"""RabbitMQ, the event bus: one robust connection per process, topology declared idempotently.

Topology (names from settings, so test runs get their own):
    exchange  <rabbitmq_exchange>            direct, durable
    queue     <rabbitmq_queue>               quorum, durable, bound with routing key "new_order",
                                             dead-letters to <exchange>.dlx
    exchange  <rabbitmq_exchange>.dlx        fanout, durable
    queue     <rabbitmq_queue>.dead          quorum, durable: what the consumer could not parse
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)

from shared.settings import Settings

logger = logging.getLogger(__name__)

NEW_ORDER = "new_order"
CONNECT_TIMEOUT_S = 5.0
PUBLISH_TIMEOUT_S = 5.0


class Topology:
    def __init__(self, settings: Settings) -> None:
        self.exchange = settings.rabbitmq_exchange
        self.queue = settings.rabbitmq_queue
        self.dead_exchange = f"{settings.rabbitmq_exchange}.dlx"
        self.dead_queue = f"{settings.rabbitmq_queue}.dead"

    async def declare(self, channel: AbstractChannel) -> tuple[AbstractExchange, AbstractQueue]:
        dlx = await channel.declare_exchange(
            self.dead_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead = await channel.declare_queue(
            self.dead_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(dlx)
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        queue = await channel.declare_queue(
            self.queue,
            durable=True,
            arguments={"x-queue-type": "quorum", "x-dead-letter-exchange": self.dead_exchange},
        )
        await queue.bind(exchange, routing_key=NEW_ORDER)
        return exchange, queue

    async def delete(self, channel: AbstractChannel) -> None:
        """Remove everything (tests clean up after themselves)."""
        for queue in (self.queue, self.dead_queue):
            await channel.queue_delete(queue)
        for exchange in (self.exchange, self.dead_exchange):
            await channel.exchange_delete(exchange)


class EventBus:
    """Publishes with publisher confirms; connects in the background so start-up never waits.

    While RabbitMQ is unreachable ``publish`` raises at once and the caller leaves the event
    in the outbox for the sweeper; aio-pika's robust connection reconnects by itself.
    """

    def __init__(self, settings: Settings) -> None:
        self._url = settings.rabbitmq_url
        self.topology = Topology(settings)
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._exchange is not None
        )

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect_forever(), name="event-bus-connect")

    async def wait_ready(self, within: float) -> bool:
        """Poll rather than wait on an Event: callers may run on another loop (test clients)."""
        deadline = time.monotonic() + within
        while not self.ready and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return self.ready

    async def _connect_forever(self) -> None:
        delay = 0.5
        while self._connection is None:
            try:
                connection = await aio_pika.connect_robust(self._url, timeout=CONNECT_TIMEOUT_S)
                channel = await connection.channel(publisher_confirms=True)
                self._exchange, _ = await self.topology.declare(channel)
                self._connection = connection
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("rabbitmq not reachable yet (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def publish(self, body: bytes, message_id: str, routing_key: str = NEW_ORDER) -> None:
        """Return once the broker confirmed the persistent message; raise otherwise."""
        if not self.ready or self._exchange is None:
            raise ConnectionError("rabbitmq is not connected")
        message = aio_pika.Message(
            body,
            message_id=message_id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=routing_key,
        )
        await self._exchange.publish(message, routing_key=routing_key, timeout=PUBLISH_TIMEOUT_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
