"""RabbitMQ, the event bus: one robust connection per process, topology declared idempotently.

Topology (names from settings, so test runs get their own):
    exchange  <rabbitmq_exchange>            direct, durable; every event of an order, routing
                                             key = its name (shared.messaging.events); other
                                             services bind queues of their own by key
    queue     <rabbitmq_queue>               quorum, durable, bound with routing key "new_order",
                                             dead-letters to <exchange>.dlx
    queue     <rabbitmq_queue>.sse           quorum, durable, bound with every event's key: the
                                             consumer feeds the users' event logs from it
                                             (features/feed_order_events), dead-letters to
                                             <exchange>.dlx
    exchange  <rabbitmq_exchange>.dlx        fanout, durable
    queue     <rabbitmq_queue>.dead          quorum, durable: what the consumer could not parse;
                                             at most DEAD_LETTER_MAX_LENGTH messages, the
                                             oldest dropped first (a flood of junk cannot
                                             fill the broker's disk)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.connection import make_url

from shared.messaging.events import EVENT_NAMES, NEW_ORDER
from shared.settings import Settings

logger = logging.getLogger(__name__)

# Events that must reach a queue or stay in the outbox (see ``EventBus.publish``).
MUST_BE_ROUTED = frozenset({NEW_ORDER})

CONNECT_TIMEOUT_S = 5.0
PUBLISH_TIMEOUT_S = 5.0
# How long a robust connection waits between reconnect attempts after losing the broker.
RECONNECT_INTERVAL_S = 2.0


# aiormq ends a close in tasks that nothing keeps a strong reference to: the reader's done
# callback starts ``close_writer_task``, which runs ``FutureStore.reject_all``. A connection
# dropped right after ``close()`` returns can be collected with them still pending ("Task was
# destroyed but it is pending", "coroutine ... was never awaited"), seen under load when an
# app stops moments after it started.
_AIORMQ_CLOSING = frozenset(
    {"Connection._on_reader_done.<locals>.close_writer_task", "FutureStore.reject_all"}
)
CLOSE_TIMEOUT_S = 5.0


async def close(connection: AbstractRobustConnection) -> None:
    """Close ``connection`` and wait for the tasks aiormq started to finish the close."""
    try:
        await connection.close()
    finally:
        current = asyncio.current_task()
        for _ in range(3):  # the reader's done callback may start its task a tick later
            await asyncio.sleep(0)
            closing = [
                task
                for task in asyncio.all_tasks()
                if task is not current
                and getattr(task.get_coro(), "__qualname__", None) in _AIORMQ_CLOSING
            ]
            if closing:
                await asyncio.wait(closing, timeout=CLOSE_TIMEOUT_S)


async def connect(url: str) -> AbstractRobustConnection:
    """One robust connection: after the first success aio-pika reconnects by itself, restoring
    channels, prefetch, declared exchanges/queues/bindings and consumers.

    What ``aio_pika.connect_robust`` does, but a connect that fails or is cancelled (a process
    stopping while the broker is slow) closes the half-made connection: abandoned, it kept
    its reconnect task and left the garbage collector a close it cannot run.
    """
    connection = aio_pika.RobustConnection(
        make_url(url, reconnect_interval=RECONNECT_INTERVAL_S),
        reconnect_interval=RECONNECT_INTERVAL_S,
    )
    try:
        await connection.connect(timeout=CONNECT_TIMEOUT_S)
    except BaseException:
        await close(connection)
        raise
    return connection


def span_attributes(
    operation: str,
    destination: str,
    message_id: str,
    order_id: str,
    routing_key: str | None = None,
) -> dict[str, str]:
    """OpenTelemetry's messaging attributes for a span around one of our messages (the
    producer's ``send``, the consumer's ``process``), with the order it is about."""
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": operation,
        "messaging.destination.name": destination,
        "messaging.message.id": message_id,
        "order.id": order_id,
    }
    if routing_key is not None:
        attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
    return attributes


def is_open(connection: AbstractRobustConnection | None, channel: AbstractChannel | None) -> bool:
    """Usable right now. ``RobustConnection.is_closed`` only turns true on an explicit
    ``close()``, so it stays False while reconnecting; ``connected`` is cleared on the loss and
    the channel reports closed until it is reopened on the new connection."""
    return (
        connection is not None
        and connection.connected.is_set()
        and channel is not None
        and not channel.is_closed
    )


class Topology:
    def __init__(self, settings: Settings) -> None:
        self.exchange = settings.rabbitmq_exchange
        self.queue = settings.rabbitmq_queue
        self.dead_exchange = f"{settings.rabbitmq_exchange}.dlx"
        self.dead_queue = f"{settings.rabbitmq_queue}.dead"
        self.feed_queue = f"{settings.rabbitmq_queue}.sse"
        self.dead_max_length = settings.dead_letter_max_length

    async def declare(self, channel: AbstractChannel) -> tuple[AbstractExchange, AbstractQueue]:
        """Declare everything; returns the exchange and the ``new_order`` queue."""
        exchange, queue, _ = await self.declare_all(channel)
        return exchange, queue

    async def declare_all(
        self, channel: AbstractChannel
    ) -> tuple[AbstractExchange, AbstractQueue, AbstractQueue]:
        """Declare everything; returns the exchange, the ``new_order`` queue and the feed's.

        Every process that publishes declares the feed's queue too, so events published while
        no consumer has run yet wait there for it."""
        dlx = await channel.declare_exchange(
            self.dead_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead = await channel.declare_queue(
            self.dead_queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-max-length": self.dead_max_length,
                "x-overflow": "drop-head",
            },
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
        feed = await channel.declare_queue(
            self.feed_queue,
            durable=True,
            arguments={"x-queue-type": "quorum", "x-dead-letter-exchange": self.dead_exchange},
        )
        for name in EVENT_NAMES:
            await feed.bind(exchange, routing_key=name)
        return exchange, queue, feed

    async def delete(self, channel: AbstractChannel) -> None:
        """Remove everything (tests clean up after themselves)."""
        for queue in (self.queue, self.feed_queue, self.dead_queue):
            await channel.queue_delete(queue)
        for exchange in (self.exchange, self.dead_exchange):
            await channel.exchange_delete(exchange)


class EventBus:
    """Publishes with publisher confirms; connects in the background so start-up never waits.

    While RabbitMQ is unreachable (also while a robust connection is reconnecting) ``publish``
    raises at once and the caller leaves the event in the outbox for the sweeper.
    """

    def __init__(self, settings: Settings) -> None:
        self._url = settings.rabbitmq_url
        self.topology = Topology(settings)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._exchange is not None and is_open(self._connection, self._channel)

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
                connection = await connect(self._url)
                try:
                    channel = connection.channel(publisher_confirms=True)
                    await channel.initialize(timeout=CONNECT_TIMEOUT_S)
                    self._exchange, _ = await self.topology.declare(channel)
                except BaseException:
                    await close(connection)
                    raise
                self._channel = channel
                self._connection = connection
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker down or refusing: retry
                logger.warning("rabbitmq not reachable yet (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def publish(
        self,
        body: bytes,
        message_id: str,
        routing_key: str = NEW_ORDER,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Return once the broker confirmed the persistent message; raise otherwise.

        The channel has publisher confirms, so ``Exchange.publish`` waits for the broker's
        ``Basic.Ack`` (a nack raises ``DeliveryError``).

        ``new_order`` is ``mandatory``: our consumer's queue must be bound for it, so a message
        no queue takes comes back as a ``Basic.Return``, which is not a delivery: raise, so the
        outbox keeps it. The other events (``order_status_changed``, ``order_processed``) are
        for other services' queues, which may not exist yet: published to the exchange with
        confirms but not ``mandatory``, so an event nobody has bound a queue for is confirmed
        and dropped by the broker rather than retried by the sweeper forever.

        ``headers``: the trace context (``traceparent``/``tracestate``), never in the body.
        """
        if not self.ready or self._exchange is None:
            raise ConnectionError("rabbitmq is not connected")
        message = aio_pika.Message(
            body,
            message_id=message_id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=routing_key,
            headers=dict(headers) if headers else None,
        )
        confirmation = await self._exchange.publish(
            message,
            routing_key=routing_key,
            mandatory=routing_key in MUST_BE_ROUTED,
            timeout=PUBLISH_TIMEOUT_S,
        )
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise ConnectionError(f"rabbitmq did not route {routing_key} message {message_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            await close(self._connection)
            self._connection = None
            self._channel = None
            self._exchange = None
