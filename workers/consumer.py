"""The RabbitMQ → arq bridge: one ``process_order`` job per ``new_order`` event; and the feed
of the users' event logs (features/feed_order_events) from every order event, on a queue and
a channel of its own (``<queue>.sse``), so the live stream (GET /orders/events) never holds up
the jobs.

Run with ``python -m workers.consumer`` (``just consumer``); tests call ``run_consumer``.

Per message:
- not a ``NewOrderEvent`` → ``reject(requeue=False)``: the queue dead-letters it to
  ``<queue>.dead``; it is never retried, so it cannot become a crash loop;
- else enqueue job ``process_order:<order_id>`` and ack only once Redis took it. A duplicate
  event finds the job (or its result) there, arq makes no second one, and it is acked too;
- each event is handled in a consumer span continuing the trace its headers carry
  (``traceparent``), and the job gets that span's context (``shared.tracing``);
- Redis unreachable → no ack: the handler keeps the message and retries with exponential
  backoff (capped). The prefetch bounds how many messages are held, so a Redis outage
  pauses consumption instead of spinning, and nothing is requeued (which would burn the
  quorum queue's delivery count).

The connection is aio-pika's robust one: after a broker restart or a dropped connection it
reconnects and restores the channel, prefetch, topology and consumer. Handlers that were
running lose their message's delivery; the broker redelivers it and the job id dedupes.

SIGTERM/SIGINT: stop consuming, give running handlers up to ``STOP_GRACE_S`` to enqueue and
ack, then close; anything still unacked (a handler waiting for Redis) goes back to the queue
and another consumer gets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import msgspec
import uvloop
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from arq.connections import ArqRedis
from opentelemetry.trace import SpanKind
from prometheus_client import Counter

from features.feed_order_events.job import FeedHandler
from shared import tracing
from shared.db import Database, create_engine
from shared.logs import configure_logging
from shared.messaging.bus import CONNECT_TIMEOUT_S, Topology, close, connect, span_attributes
from shared.messaging.consuming import HeldMessageHandler, backoff, settle, stopped_within
from shared.messaging.events import NEW_ORDER, decode_event
from shared.messaging.jobs import create_arq_redis, enqueue_process_order
from shared.metrics import serve_metrics
from shared.orders.event_log import EventLog
from shared.redis import create_redis
from shared.settings import Settings, load_settings

# The module's name however it runs: under `python -m workers.consumer` __name__ is
# "__main__", the spec's name is still "workers.consumer".
logger = logging.getLogger(__spec__.name)

STOP_GRACE_S = 5.0

EVENTS_CONSUMED = Counter(
    "orders_consumer_events_total",
    "new_order events the consumer settled, by outcome",
    ["outcome"],  # enqueued | duplicate | dead_lettered
)


class NewOrderHandler(HeldMessageHandler):
    """One ``process_order`` job per ``new_order`` event."""

    def __init__(self, settings: Settings, arq: ArqRedis, stop: asyncio.Event) -> None:
        super().__init__(stop, logger)
        self._arq_queue = settings.arq_queue
        self._arq = arq

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            event = decode_event(message.body)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
            if await self.dead_letter(message, exc):
                EVENTS_CONSUMED.labels("dead_lettered").inc()
            return
        order_id = str(event.order_id)
        with tracing.span(
            f"{message.routing_key or NEW_ORDER} process",
            kind=SpanKind.CONSUMER,
            parent=message.headers,
            attributes=span_attributes(
                "process", message.exchange or "", message.message_id or "", order_id
            ),
        ):
            # The job continues this span's trace (tracing off here: the message's own).
            carried = tracing.carrier() or tracing.trace_headers(message.headers)
            await self.enqueue(message, order_id, carried)

    async def enqueue(
        self,
        message: AbstractIncomingMessage,
        order_id: str,
        trace_context: dict[str, str] | None,
    ) -> None:
        """Enqueue the order's job (holding the message while Redis is down), then ack."""
        extra = {"order_id": order_id}
        job = await self.hold(
            lambda: enqueue_process_order(self._arq, self._arq_queue, order_id, trace_context),
            "enqueue process_order",
            extra,
        )
        if await settle(message.ack(), message):
            if job is None:
                EVENTS_CONSUMED.labels("duplicate").inc()
                logger.info("duplicate new_order event: job already exists", extra=extra)
            else:
                EVENTS_CONSUMED.labels("enqueued").inc()
                logger.info("process_order enqueued", extra=extra)


Consuming = list[tuple[AbstractQueue, str]]


async def open_consumer(
    settings: Settings, handler: NewOrderHandler, feed: FeedHandler
) -> tuple[AbstractRobustConnection, Consuming]:
    """Connect, declare the topology, set the prefetch and start consuming both queues."""
    connection = await connect(settings.rabbitmq_url)
    try:
        # The feed on a channel of its own: it acks a batch in one frame (``multiple``), which
        # settles every delivery of its channel below the tag (features/feed_order_events/acks).
        queues = []
        for _ in range(2):
            channel = connection.channel(publisher_confirms=False)
            await channel.initialize(timeout=CONNECT_TIMEOUT_S)
            await channel.set_qos(prefetch_count=settings.consumer_prefetch)
            queues.append(await Topology(settings).declare_all(channel))
        (_, queue, _), (_, _, feed_queue) = queues
        consuming = [(queue, await queue.consume(handler))]
        consuming.append((feed_queue, await feed_queue.consume(feed)))
    except BaseException:
        await close(connection)
        raise
    return connection, consuming


async def run_consumer(
    settings: Settings, stop: asyncio.Event, started: asyncio.Event | None = None
) -> None:
    """Consume until ``stop`` is set; ``started`` is set once the consumer is registered."""
    arq = create_arq_redis(settings, max_connections=settings.consumer_prefetch + 4)
    handler = NewOrderHandler(settings, arq, stop)
    # The feed's stores: its own pool (a prefetch of deliveries at most reach them at once).
    db = Database(create_engine(settings, max_overflow=0))
    redis = create_redis(settings.redis_url, max_connections=settings.consumer_prefetch + 4)
    log = EventLog(
        redis,
        settings.redis_prefix,
        log_seconds=settings.sse_log_seconds,
        log_length=settings.sse_log_length,
    )
    feed = FeedHandler(db, log, stop)
    try:
        attempt = 0
        while True:
            try:
                connection, consuming = await open_consumer(settings, handler, feed)
                break
            except Exception as exc:  # noqa: BLE001 - broker down or refusing: retry
                delay = backoff(attempt)
                attempt += 1
                logger.warning("rabbitmq not reachable (%s); retrying in %.1fs", exc, delay)
                if await stopped_within(stop, delay):
                    return
        logger.info(
            "consuming %s into arq queue %s, and %s into the event logs",
            *(consuming[0][0].name, settings.arq_queue, consuming[1][0].name),
        )
        if started is not None:
            started.set()
        try:
            await stop.wait()
            logger.info("stopping: no new deliveries; waiting for running handlers")
            # While disconnected, cancelling would wait for the broker: bound it.
            for queue, tag in consuming:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(queue.cancel(tag), CONNECT_TIMEOUT_S)
            idle = await asyncio.gather(
                handler.wait_idle(STOP_GRACE_S), feed.wait_idle(STOP_GRACE_S)
            )
            if not all(idle):
                logger.warning("handlers still running at shutdown; their events are redelivered")
        finally:
            await close(connection)
    finally:
        await arq.aclose()
        await redis.aclose()
        await db.dispose()
    logger.info("consumer stopped")


async def main() -> None:
    settings = load_settings()
    configure_logging(settings)
    tracing.start_tracing(settings, tracing.CONSUMER)
    serve_metrics(settings.consumer_metrics_port, settings.metrics_host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_consumer(settings, stop)


if __name__ == "__main__":
    uvloop.run(main())  # as uvicorn runs the API: less CPU per message (BENCHMARKS.md)
