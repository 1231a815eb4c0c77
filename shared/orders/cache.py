"""The Redis cache of orders: the encoded public view, stored as bytes and served as is.

Key ``<prefix>order:<id>``. The cached view carries ``user_id``, so ownership is checked on a
hit exactly as on a miss.

Races: every write to an order sets ``updated_at = clock_timestamp()`` under the row lock, so
``updated_at`` only grows. ``cache_order`` writes a view only if it is at least as new as the
one cached (compared in Redis, atomically), so a reader that missed and read the row just
before a PATCH committed, or a worker finishing after a PATCH, can never put an older
status back over a newer one.

Outages: when a write to Redis fails, the entry Redis holds may be older than the database
(a PATCH during a partition: Redis kept the PENDING view). The process remembers the view it
could not write; until Redis has it, reads of that order skip the cache and go to
PostgreSQL, and the first Redis call that works again writes the remembered views (newest
wins, as always). So no reader of this process sees the old status after the PATCH.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.orders.view import OrderView

logger = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(OrderView)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The version a forgotten order's key holds: newer than any view, so no late write (a job
# finishing after the account was deleted) can cache the order again.
_GONE_VERSION = 2**53 - 1

_PUT_IF_NEWER = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) < current then
    return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


def version_of(view: OrderView) -> int:
    """``updated_at`` in whole microseconds: exact, and below 2**53 for Lua's numbers."""
    return (view.updated_at - _EPOCH) // timedelta(microseconds=1)


# Views that could not be written during an outage, kept per process until Redis is back.
# Beyond this many, the oldest are dropped (their stale entries expire with the TTL).
MAX_UNWRITTEN = 10_000


class OrderCache:
    def __init__(self, redis: Redis, prefix: str, ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._put = redis.register_script(_PUT_IF_NEWER)
        self._unwritten: dict[uuid.UUID, OrderView] = {}
        self._writing_unwritten = False  # one request writes the backlog; the others go on

    def key(self, order_id: uuid.UUID) -> str:
        return f"{self._prefix}order:{order_id}"

    def version_key(self, order_id: uuid.UUID) -> str:
        return f"{self._prefix}order-version:{order_id}"

    async def get_raw(
        self, order_id: uuid.UUID, prefetched: tuple[bool, bytes | None] = (False, None)
    ) -> bytes | None:
        """The cached JSON, or None on a miss, when Redis is unreachable, or when what Redis
        holds may be older than the database (PostgreSQL answers). ``prefetched`` is
        ``(True, value)`` when the value was read already (the limiter's round trip)."""
        read, raw = prefetched
        if not read:
            try:
                raw = await self._redis.get(self.key(order_id))
            except RedisError as exc:
                logger.warning(
                    "order cache read failed: %s", exc, extra={"order_id": str(order_id)}
                )
                return None
        if self._unwritten:
            stale = order_id in self._unwritten
            await self._write_unwritten()  # Redis answers again
            if stale:
                return None
        return raw

    @staticmethod
    def decode(raw: bytes) -> OrderView:
        return _decoder.decode(raw)

    @staticmethod
    def encode(view: OrderView) -> bytes:
        return _encoder.encode(view)

    async def cache_order(self, view: OrderView) -> bytes:
        """Cache ``view`` unless a newer one is there; returns the encoded view either way.

        A Redis failure is logged, not raised: the database already has the truth, and the
        version key outlives the entry, so a later write cannot be undercut by this one.
        """
        encoded = self.encode(view)
        try:
            await self._put_view(view, encoded)
        except RedisError as exc:
            logger.warning("order cache write failed: %s", exc, extra={"order_id": str(view.id)})
            self._remember(view)
            return encoded
        pending = self._unwritten.get(view.id)
        if pending is not None and version_of(pending) <= version_of(view):
            del self._unwritten[view.id]
        if self._unwritten:
            await self._write_unwritten()
        return encoded

    async def forget(self, order_ids: list[uuid.UUID]) -> None:
        """Drop the orders from the cache for good (their account is deleted).

        Each entry goes, and its version key is set beyond any real version for twice the TTL,
        so a write racing the deletion is refused. A Redis failure is logged: the entries then
        expire with their TTL, readable meanwhile by no one (their owner's tokens are refused).
        """
        if not order_ids:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for order_id in order_ids:
                    self._unwritten.pop(order_id, None)
                    pipe.delete(self.key(order_id))
                    pipe.set(self.version_key(order_id), _GONE_VERSION, ex=self._ttl * 2)
                await pipe.execute()
        except RedisError as exc:
            logger.warning("order cache: deleted orders not dropped: %s", exc)

    async def _put_view(self, view: OrderView, encoded: bytes | None = None) -> None:
        await self._put(
            keys=[self.key(view.id), self.version_key(view.id)],
            args=[encoded or self.encode(view), version_of(view), self._ttl, self._ttl * 2],
        )

    def _remember(self, view: OrderView) -> None:
        pending = self._unwritten.get(view.id)
        if pending is None or version_of(pending) <= version_of(view):
            self._unwritten.pop(view.id, None)  # re-inserted last: the dict stays oldest-first
            self._unwritten[view.id] = view
        while len(self._unwritten) > MAX_UNWRITTEN:
            dropped = next(iter(self._unwritten))
            del self._unwritten[dropped]
            logger.warning(
                "too many order views not written to the cache; one may be stale until its TTL",
                extra={"order_id": str(dropped)},
            )

    async def _write_unwritten(self) -> None:
        """Write what an outage kept from Redis; stop at the first failure (still down)."""
        if self._writing_unwritten:
            return
        self._writing_unwritten = True
        try:
            for order_id, view in list(self._unwritten.items()):
                try:
                    await self._put_view(view)
                except RedisError as exc:
                    logger.warning("order cache still unreachable: %s", exc)
                    return
                if self._unwritten.get(order_id) is view:
                    del self._unwritten[order_id]
            logger.info("order cache: views kept during the outage are written")
        finally:
            self._writing_unwritten = False
