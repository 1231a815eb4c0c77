"""The RabbitMQ → arq bridge: one ``process_order`` job per ``new_order`` event.

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
import random
import signal
from collections.abc import Awaitable

import msgspec
import uvloop
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from arq.connections import ArqRedis
from opentelemetry.trace import SpanKind
from prometheus_client import Counter

from shared import tracing
from shared.logs import configure_logging
from shared.messaging.bus import CONNECT_TIMEOUT_S, Topology, close, connect
from shared.messaging.events import NEW_ORDER, decode_event
from shared.messaging.jobs import create_arq_redis, enqueue_process_order
from shared.metrics import serve_metrics
from shared.settings import Settings, load_settings

# The module's name however it runs: under `python -m workers.consumer` __name__ is
# "__main__", the spec's name is still "workers.consumer".
logger = logging.getLogger(__spec__.name)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 5.0
STOP_GRACE_S = 5.0

EVENTS_CONSUMED = Counter(
    "orders_consumer_events_total",
    "new_order events the consumer settled, by outcome",
    ["outcome"],  # enqueued | duplicate | dead_lettered
)


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True if it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def backoff(attempt: int) -> float:
    """Exponential, capped, with jitter so held messages do not retry in lockstep."""
    delay: float = min(BACKOFF_MIN_S * 2 ** min(attempt, 16), BACKOFF_MAX_S)
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography


class NewOrderHandler:
    """The consumer callback. aio-pika runs each delivery in its own task, so up to the
    prefetch count run at once; the running ones are tracked for a graceful stop."""

    def __init__(self, settings: Settings, arq: ArqRedis, stop: asyncio.Event) -> None:
        self._arq_queue = settings.arq_queue
        self._arq = arq
        self._stop = stop
        self._running: set[asyncio.Task[object]] = set()
        self._redis_down = False

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self.handle(message)
        finally:
            if task is not None:
                self._running.discard(task)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            event = decode_event(message.body)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
            logger.warning(
                "unparseable message %s sent to the dead-letter queue: %s", message.message_id, exc
            )
            if await settle(message.reject(requeue=False), message):
                EVENTS_CONSUMED.labels("dead_lettered").inc()
            return
        order_id = str(event.order_id)
        with tracing.span(
            f"{message.routing_key or NEW_ORDER} process",
            kind=SpanKind.CONSUMER,
            parent=message.headers,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": message.exchange or "",
                "messaging.message.id": message.message_id or "",
                "order.id": order_id,
            },
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
        attempt = 0
        while True:
            try:
                job = await enqueue_process_order(
                    self._arq, self._arq_queue, order_id, trace_context
                )
                break
            except Exception as exc:  # noqa: BLE001 - not enqueued, whatever the cause: hold and retry
                delay = backoff(attempt)
                attempt += 1
                if not self._redis_down:
                    self._redis_down = True
                    logger.warning(
                        "cannot enqueue process_order (%s: %s); holding events unacked",
                        type(exc).__name__,
                        exc,
                        extra=extra,
                    )
                logger.debug("enqueue retry in %.1fs", delay, extra=extra)
                if await stopped_within(self._stop, delay):
                    logger.info("stopping: event left unacked for redelivery", extra=extra)
                    return
        if self._redis_down:
            self._redis_down = False
            logger.info("enqueueing works again", extra=extra)
        if await settle(message.ack(), message):
            if job is None:
                EVENTS_CONSUMED.labels("duplicate").inc()
                logger.info("duplicate new_order event: job already exists", extra=extra)
            else:
                EVENTS_CONSUMED.labels("enqueued").inc()
                logger.info("process_order enqueued", extra=extra)

    async def wait_idle(self, within: float) -> bool:
        """Wait for running handlers; True if none is left."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=within)
        return not self._running


async def settle(outcome: Awaitable[object], message: AbstractIncomingMessage) -> bool:
    """Await an ack/reject; if the channel is gone the broker redelivers, so just log it."""
    try:
        await outcome
    except Exception as exc:  # noqa: BLE001 - a lost channel: redelivery follows
        logger.warning("could not settle message %s: %s", message.message_id, exc)
        return False
    return True


async def open_consumer(
    settings: Settings, handler: NewOrderHandler
) -> tuple[AbstractRobustConnection, AbstractQueue, str]:
    """Connect, declare the topology, set the prefetch and start consuming."""
    connection = await connect(settings.rabbitmq_url)
    try:
        channel = connection.channel(publisher_confirms=False)
        await channel.initialize(timeout=CONNECT_TIMEOUT_S)
        await channel.set_qos(prefetch_count=settings.consumer_prefetch)
        _, queue = await Topology(settings).declare(channel)
        tag = await queue.consume(handler)
    except BaseException:
        await close(connection)
        raise
    return connection, queue, tag


async def run_consumer(
    settings: Settings, stop: asyncio.Event, started: asyncio.Event | None = None
) -> None:
    """Consume until ``stop`` is set; ``started`` is set once the consumer is registered."""
    arq = create_arq_redis(settings, max_connections=settings.consumer_prefetch + 4)
    handler = NewOrderHandler(settings, arq, stop)
    try:
        attempt = 0
        while True:
            try:
                connection, queue, tag = await open_consumer(settings, handler)
                break
            except Exception as exc:  # noqa: BLE001 - broker down or refusing: retry
                delay = backoff(attempt)
                attempt += 1
                logger.warning("rabbitmq not reachable (%s); retrying in %.1fs", exc, delay)
                if await stopped_within(stop, delay):
                    return
        logger.info("consuming %s into arq queue %s", queue.name, settings.arq_queue)
        if started is not None:
            started.set()
        try:
            await stop.wait()
            logger.info("stopping: no new deliveries; waiting for running handlers")
            # While disconnected, cancelling would wait for the broker: bound it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), CONNECT_TIMEOUT_S)
            if not await handler.wait_idle(STOP_GRACE_S):
                logger.warning("handlers still running at shutdown; their events are redelivered")
        finally:
            await close(connection)
    finally:
        await arq.aclose()
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
