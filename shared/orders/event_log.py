"""Each user's event log in Redis, the one store behind GET /orders/events.

The consumer appends (features/feed_order_events), the API processes read and listen
(features/order_events). Per user, under the deployment's prefix:

- ``sse:log:<user>``: a stream, one entry per event (``event``, ``data``: the order's view as
  JSON); trimmed to SSE_LOG_LENGTH entries and SSE_LOG_SECONDS, gone SSE_LOG_SECONDS after
  its last entry;
- ``sse:seen:<event_id>``: the bus event was appended already (the bus delivers at least once);
- ``sse:leases:<user>``: the user's open streams, a sorted set of lease expiries.

Each append publishes a notice on ``sse:notices`` (one channel: each API process subscribes
once and hands notices to its own streams). Appending, trimming, expiring and publishing are
one Lua script (for all the events the consumer got at once), so notices leave in the log's
order and a duplicate event does neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
from redis.asyncio import Redis

from shared.orders.event_positions import LogState, Position, format_position, parse_position

# ARGV[1..3]: the log's lifetime (ms), its length and the notices' channel; then per event
# (KEYS: its seen key, its user's log) three ARGV: its name, its data, its user. Events are
# appended in the order given; one already seen answers false and publishes nothing.
_APPEND = """
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1])
local ids = {}
for i = 1, #KEYS / 2 do
  local seen, log = KEYS[2 * i - 1], KEYS[2 * i]
  local event, data, user = ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3]
  ids[i] = false
  if redis.call('SET', seen, '1', 'NX', 'PX', ARGV[1]) then
    local previous = '0-0'
    local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
    if #last > 0 then previous = last[1][1] end
    local id = redis.call('XADD', log, 'MAXLEN', ARGV[2], '*', 'event', event, 'data', data)
    redis.call('XTRIM', log, 'MINID', oldest)
    redis.call('PEXPIRE', log, ARGV[1])
    redis.call('PUBLISH', ARGV[3], user .. '\\n' .. id .. '\\n' .. previous .. '\\n' .. event
      .. '\\n' .. data)
    ids[i] = id
  end
end
return ids
"""

# The log's facts for a position (is its entry still there, was any entry ever trimmed) and
# up to ARGV[2] entries after it. XINFO's max-deleted-entry-id would say what was trimmed,
# but Redis 7.0 moves it on XDEL only, not on a trim.
_READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local fields = {}
for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
local found = 0
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) > 0 then found = 1 end
local complete = 0
if fields['entries-added'] == fields['length'] then complete = 1 end
local entries = {}
if tonumber(ARGV[2]) > 0 then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
end
return {fields['last-generated-id'], found, complete, entries}
"""

# Take (or renew) a lease: drop the expired ones, refuse past the limit unless renewing.
_LEASE = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class Notice(msgspec.Struct, frozen=True):
    """An entry just appended to ``user_id``'s log, right after ``previous``."""

    user_id: int
    entry: Position
    previous: Position
    event: str
    data: str


class Appending(msgspec.Struct, frozen=True):
    """An event for ``user_id``'s log: ``event`` the stream's event name, ``data`` the view."""

    event_id: str
    user_id: int
    event: str
    data: str


class Entry(msgspec.Struct, frozen=True):
    position: Position
    event: str
    data: str


class LogPage(msgspec.Struct, frozen=True):
    state: LogState
    entries: list[Entry]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _position(value: bytes | str) -> Position:
    position = parse_position(_text(value))
    if position is None:
        raise ValueError(f"not a stream entry id: {value!r}")
    return position


def parse_notice(message: bytes | str) -> Notice | None:
    """A notice as the append script published it; None for anything else."""
    parts = _text(message).split("\n", 4)
    if len(parts) != 5 or not parts[0].isdigit():
        return None
    entry, previous = parse_position(parts[1]), parse_position(parts[2])
    if entry is None or previous is None:
        return None
    return Notice(int(parts[0]), entry, previous, parts[3], parts[4])


class EventLog:
    """The per-user logs, their notices and stream leases, under one Redis prefix."""

    def __init__(self, redis: Redis, prefix: str, *, log_seconds: int, log_length: int) -> None:
        self.redis = redis
        self._prefix = prefix
        self._log_ms = log_seconds * 1000
        self._log_length = log_length
        self.channel: Final = f"{prefix}sse:notices"
        self._append = redis.register_script(_APPEND)
        self._read = redis.register_script(_READ)
        self._lease = redis.register_script(_LEASE)

    def log_key(self, user_id: int) -> str:
        return f"{self._prefix}sse:log:{user_id}"

    def _leases_key(self, user_id: int) -> str:
        return f"{self._prefix}sse:leases:{user_id}"

    async def append(self, events: Sequence[Appending]) -> list[str | None]:
        """Append each event once (by ``event_id``), in the order given, and publish its
        notice: one script call for all. Per event its entry's id, or None if it was appended
        before (or earlier in ``events``)."""
        keys: list[str] = []
        args: list[str | int] = [self._log_ms, self._log_length, self.channel]
        for event in events:
            keys += (f"{self._prefix}sse:seen:{event.event_id}", self.log_key(event.user_id))
            args += (event.event, event.data, event.user_id)
        entries = await self._append(keys=keys, args=args)
        return [None if entry is None else _text(entry) for entry in entries]

    async def read(self, user_id: int, after: Position, count: int) -> LogPage | None:
        """The log's state around ``after`` and up to ``count`` entries after it; None: no
        log."""
        reply = await self._read(keys=[self.log_key(user_id)], args=[format_position(after), count])
        if reply is None:
            return None
        last, found, complete, rows = reply
        entries = []
        for entry_id, fields in rows:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            entries.append(
                Entry(_position(entry_id), _text(values[b"event"]), _text(values[b"data"]))
            )
        return LogPage(LogState(_position(last), bool(found), bool(complete)), entries)

    async def lease(self, user_id: int, stream_id: str, lease_ms: int, limit: int) -> bool:
        """Take or renew ``stream_id``'s lease; False when the user holds ``limit`` already."""
        taken = await self._lease(
            keys=[self._leases_key(user_id)], args=[stream_id, lease_ms, limit]
        )
        return bool(taken)

    async def release(self, user_id: int, stream_id: str) -> None:
        await self.redis.zrem(self._leases_key(user_id), stream_id)
