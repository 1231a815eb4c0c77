"""One user's stream: the log after ``Last-Event-ID``, then live notices, never an entry twice.

Order of work: subscribe to the process's notices first, then read the log, so nothing
appended in between is missed; a notice not following the last entry sent (one was lost, or
dropped because the client is slow) sends the stream back to the log, read in pages of
``PAGE`` entries. The rules are pure (shared/orders/event_positions.py).

Bounds: a comment line every SSE_KEEPALIVE_S, which also renews the stream's lease (at most
SSE_MAX_STREAMS_PER_USER leases a user, across every API process; a killed process's leases
expire after ``lease_ms``); the end of the access token's life; the process's shutdown. A
Redis error ends the stream: the client reconnects with its Last-Event-ID and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Final

import anyio
from litestar.response import ServerSentEventMessage
from redis.exceptions import RedisError

from features.order_events.listener import NoticeListener, Subscriber
from shared.orders.event_log import EventLog
from shared.orders.event_positions import (
    ORIGIN,
    RESET,
    Position,
    covers,
    format_position,
    on_notice,
    parse_position,
    start_of_stream,
)
from shared.settings import Settings

logger = logging.getLogger(__name__)

PAGE: Final = 100
RELEASE_WITHIN_S: Final = 1.0


class OrderStreams:
    """The process's streams: the log, the notice listener, the settings they run by."""

    def __init__(self, log: EventLog, settings: Settings) -> None:
        self.log = log
        self.listener = NoticeListener(log.redis, log.channel)
        self.keepalive_s = settings.sse_keepalive_s
        self.max_per_user = settings.sse_max_streams_per_user
        # Two keepalives and a second: a stream renews well before, a dead process's lapses.
        self.lease_ms = int(settings.sse_keepalive_s * 2000) + 1000
        self.closing = False

    async def start(self) -> None:
        await self.listener.start()

    def close(self) -> None:
        """Shutdown begins: end every stream now (uvicorn waits for them before its lifespan
        shutdown) and refuse new ones."""
        self.closing = True
        self.listener.close_all()

    async def stop(self) -> None:
        self.close()
        await self.listener.stop()

    async def open(self, user_id: int) -> str | None:
        """Take a lease for a new stream of ``user_id``; None when the user holds the most."""
        stream_id = uuid.uuid4().hex
        if await self.log.lease(user_id, stream_id, self.lease_ms, self.max_per_user):
            return stream_id
        return None

    async def release(self, user_id: int, stream_id: str) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(RELEASE_WITHIN_S):
            try:
                await self.log.release(user_id, stream_id)
            except RedisError as exc:  # the lease lapses by itself
                logger.warning("could not release a stream lease: %s", exc)


def message(entry: Position, event: str, data: str) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=data, event=event, id=format_position(entry))


def reset(at: Position) -> ServerSentEventMessage:
    """``event: reset``: the log lost events the client has not seen; it re-reads its orders.
    Its ``id`` is where the stream goes on from (none while the log is empty)."""
    return ServerSentEventMessage(
        data="{}", event=RESET, id=None if at == ORIGIN else format_position(at)
    )


class UserStream:
    def __init__(self, streams: OrderStreams, user_id: int, stream_id: str, ends_at: float) -> None:
        self._streams = streams
        self._log = streams.log
        self._user_id = user_id
        self._stream_id = stream_id
        self._ends_at = ends_at  # time.time() of the access token's expiry
        self._sent: Position = ORIGIN

    async def run(self, last_event_id: str | None) -> AsyncIterator[ServerSentEventMessage]:
        listener = self._streams.listener
        inbox = listener.subscribe(self._user_id)
        try:
            asked = parse_position(last_event_id) or ORIGIN
            page = await self._log.read(self._user_id, asked, 0)
            start = start_of_stream(last_event_id, page.state if page is not None else None)
            self._sent = start.after
            if start.reset:
                yield reset(start.after)
            if start.read_log:
                inbox.behind = True
            async for event in self._live(inbox):
                yield event
        except RedisError as exc:
            logger.warning("stream of user %s ended: Redis failed (%s)", self._user_id, exc)
        finally:
            listener.unsubscribe(inbox)
            await self._streams.release(self._user_id, self._stream_id)

    async def _live(self, inbox: Subscriber) -> AsyncIterator[ServerSentEventMessage]:
        streams = self._streams
        next_keepalive = time.monotonic() + streams.keepalive_s
        while not inbox.closed:
            left = self._ends_at - time.time()
            if left <= 0:
                return  # the access token expired: the client reconnects with a fresh one
            now = time.monotonic()
            if now >= next_keepalive:
                renewed = await self._log.lease(
                    self._user_id, self._stream_id, streams.lease_ms, streams.max_per_user
                )
                if not renewed:
                    return  # the lease lapsed (Redis lost it) and other streams took the slots
                yield ServerSentEventMessage(data=None, comment="keepalive")
                next_keepalive = now + streams.keepalive_s
            elif inbox.behind:
                async for event in self._catch_up(inbox):
                    yield event
            elif inbox.notices:
                notice = inbox.notices.popleft()
                action = on_notice(self._sent, notice.entry, notice.previous)
                if action == "send":
                    self._sent = notice.entry
                    yield message(notice.entry, notice.event, notice.data)
                elif action == "catch_up":
                    inbox.fall_behind()
            else:
                inbox.wake.clear()  # nothing is pending: sleep until a notice, a close or a bound
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(inbox.wake.wait(), min(next_keepalive - now, left))

    async def _catch_up(self, inbox: Subscriber) -> AsyncIterator[ServerSentEventMessage]:
        """Every entry after the last one sent, from the log; ``reset`` if it lost some."""
        inbox.behind = False
        inbox.notices.clear()  # the log holds them, in order
        while True:
            page = await self._log.read(self._user_id, self._sent, PAGE)
            if page is None:  # the whole log expired
                if inbox.newest > self._sent:
                    self._sent = ORIGIN
                    yield reset(ORIGIN)
                return
            if not covers(page.state, self._sent):
                self._sent = page.state.last
                yield reset(self._sent)
                return
            for entry in page.entries:
                if entry.position > self._sent:
                    self._sent = entry.position
                    yield message(entry.position, entry.event, entry.data)
            if len(page.entries) < PAGE:
                return
