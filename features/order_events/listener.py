"""One Redis pub/sub subscription per API process, handing notices to that process's streams.

Why not Litestar's ChannelsPlugin (read in .venv/litestar/channels): its subscribers see
payloads only, its history is "the last N messages of a channel", and its backlog drops
silently. The stream needs the log's own entry ids (``id:``, resuming after one), a way to
tell that a notice was missed (pub/sub is at most once: a notice names the entry before it),
and to fall back to the log rather than lose events when a client is slow. So this is a small
listener, and the log (shared/orders/event_log.py) is the source of truth.

Each stream holds at most ``NOTICES_PER_STREAM`` notices; past that they are dropped and the
stream catches up from the log (a slow client costs bounded memory). While the subscription
is down, and when it is made again, every stream catches up from the log too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from redis.asyncio import Redis

from shared.orders.event_log import Notice, parse_notice
from shared.orders.event_positions import ORIGIN, Position

logger = logging.getLogger(__name__)

NOTICES_PER_STREAM = 64
RECONNECT_MAX_S = 5.0


class Subscriber:
    """One open stream's inbox."""

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.notices: deque[Notice] = deque()
        self.behind = False  # notices were dropped: read the log
        self.newest: Position = ORIGIN  # the newest entry any notice named
        self.closed = False
        self.wake = asyncio.Event()

    def offer(self, notice: Notice) -> None:
        self.newest = max(self.newest, notice.entry)
        if not self.behind:
            if len(self.notices) < NOTICES_PER_STREAM:
                self.notices.append(notice)
            else:
                self.fall_behind()
        self.wake.set()

    def fall_behind(self) -> None:
        self.notices.clear()
        self.behind = True
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class NoticeListener:
    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._streams: dict[int, set[Subscriber]] = {}
        self._task: asyncio.Task[None] | None = None
        self.subscribed = False

    def subscribe(self, user_id: int) -> Subscriber:
        subscriber = Subscriber(user_id)
        if not self.subscribed:
            subscriber.behind = True  # what comes before the subscription is made: the log's
        self._streams.setdefault(user_id, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        streams = self._streams.get(subscriber.user_id)
        if streams is not None:
            streams.discard(subscriber)
            if not streams:
                del self._streams[subscriber.user_id]

    @property
    def open_streams(self) -> int:
        return sum(len(streams) for streams in self._streams.values())

    def close_all(self) -> None:
        """End every open stream (shutdown)."""
        for streams in self._streams.values():
            for subscriber in streams:
                subscriber.close()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="order-events-listener")

    async def stop(self) -> None:
        self.close_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _dispatch(self, data: bytes | str) -> None:
        notice = parse_notice(data)
        if notice is None:
            logger.warning("ignored a malformed notice on %s", self._channel)
            return
        for subscriber in self._streams.get(notice.user_id, ()):
            subscriber.offer(notice)

    def _all_behind(self) -> None:
        for streams in self._streams.values():
            for subscriber in streams:
                subscriber.fall_behind()

    async def _listen_forever(self) -> None:
        delay = 0.2
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                self.subscribed = True
                self._all_behind()  # whatever was published before now is in the log
                delay = 0.2
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis gone: resubscribe, streams use the log
                if self.subscribed:
                    logger.warning("order event notices lost (%s); resubscribing", exc)
                self.subscribed = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
            finally:
                self.subscribed = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
