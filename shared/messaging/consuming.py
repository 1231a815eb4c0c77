"""What every consumer callback of the consumer process shares (workers/consumer.py runs them):
tracking running deliveries for a graceful stop, holding a message unacked while a store is
down (retrying with capped, jittered backoff), and settling without raising.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aio_pika.abc import AbstractIncomingMessage

logger = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 5.0

T = TypeVar("T")


class Stopped(Exception):
    """The process is stopping while a message was held: it is left unacked for redelivery."""


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True if it was."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def backoff(attempt: int) -> float:
    """Exponential, capped, with jitter so held messages do not retry in lockstep."""
    delay: float = min(BACKOFF_MIN_S * 2 ** min(attempt, 16), BACKOFF_MAX_S)
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not cryptography


async def settle(outcome: Awaitable[object], message: AbstractIncomingMessage) -> bool:
    """Await an ack/reject; if the channel is gone the broker redelivers, so just log it."""
    try:
        await outcome
    except Exception as exc:  # noqa: BLE001 - a lost channel: redelivery follows
        logger.warning("could not settle message %s: %s", message.message_id, exc)
        return False
    return True


class HeldMessageHandler:
    """A consumer callback. aio-pika runs each delivery in its own task, so up to the prefetch
    count run at once; the running ones are tracked for a graceful stop."""

    def __init__(self, stop: asyncio.Event, log: logging.Logger) -> None:
        self._stop = stop
        self._log = log
        self._running: set[asyncio.Task[object]] = set()
        self._store_down = False

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self.handle(message)
        except Stopped:
            self._log.info("stopping: message %s left unacked for redelivery", message.message_id)
        finally:
            if task is not None:
                self._running.discard(task)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        raise NotImplementedError

    async def dead_letter(self, message: AbstractIncomingMessage, error: Exception) -> bool:
        """Reject ``message`` for good: the queue dead-letters it, so a body that cannot be
        handled is never retried (no crash loop). True once the broker has it."""
        self._log.warning(
            "unparseable message %s sent to the dead-letter queue: %s", message.message_id, error
        )
        return await settle(message.reject(requeue=False), message)

    async def hold(
        self, operation: Callable[[], Awaitable[T]], what: str, extra: dict[str, Any]
    ) -> T:
        """``operation()``, retried with backoff until it succeeds; ``Stopped`` if the process
        stops first (the message stays unacked). The prefetch bounds how many are held, so an
        outage pauses consumption instead of spinning or requeueing."""
        attempt = 0
        while True:
            try:
                result = await operation()
                break
            except Exception as exc:  # not done, whatever the cause: hold, retry
                delay = backoff(attempt)
                attempt += 1
                if not self._store_down:
                    self._store_down = True
                    self._log.warning(
                        "cannot %s (%s: %s); holding events unacked",
                        what,
                        type(exc).__name__,
                        exc,
                        extra=extra,
                    )
                self._log.debug("retry in %.1fs", delay, extra=extra)
                if await stopped_within(self._stop, delay):
                    raise Stopped from exc
        if self._store_down:
            self._store_down = False
            self._log.info("%s works again", what, extra=extra)
        return result

    async def wait_idle(self, within: float) -> bool:
        """Wait for running handlers; True if none is left."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=within)
        return not self._running
