"""Keyset pages of a user's orders: the cursor and the filter rules, pure code with no I/O.

A page is ordered by ``created_at`` then ``id``, newest first. The cursor names the position
after a page's last order: that order's ``(created_at, id)``. The next page is the orders
strictly before it in that order, so orders created in the same microsecond are told apart
by their id and none is skipped or repeated, at a cost that does not grow with the depth
(an index range scan starting at the position, where an offset reads and drops every row
before it).

Why the cursor is signed (an HMAC) rather than only strictly decoded: the list query is
always scoped to the caller, so a forged position could only ever show the caller's own
orders; but a client must treat the cursor as opaque, and the contract makes a tampered one
a 4xx. The MAC also binds the cursor to its user, so a cursor copied from another user's
list is refused rather than silently answered. The key is derived from ``JWT_SECRET`` (every
API process shares it, so a cursor works on any of them) under its own label, so the MAC
is never usable as anything else; rotating the secret invalidates outstanding cursors, which
costs a client one restart of its walk from the first page.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.orders.errors import OrderRuleError
from shared.orders.status import OrderStatus

_LABEL = b"order-service/order-page-cursor/v1"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# user id (8), created_at in microseconds since the epoch (8), order id (16)
_POSITION = struct.Struct(">qq16s")
_MAC_BYTES = 16  # 128 bits: forging one is out of reach; the cursor stays short
_CURSOR_BYTES = _POSITION.size + _MAC_BYTES
_MAX_CURSOR_CHARS = 64


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ended: its last order's ``created_at`` (aware, UTC) and ``id``."""

    created_at: datetime
    id: uuid.UUID


@functools.cache
def cursor_key(secret: str) -> bytes:
    """The cursor's own key, derived from the app's secret under a label of its own (once per
    secret: every list request asks for it)."""
    return hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()


def _mac(key: bytes, position: bytes) -> bytes:
    return hmac.new(key, position, hashlib.sha256).digest()[:_MAC_BYTES]


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def encode_cursor(key: bytes, user_id: int, position: Position) -> str:
    """The opaque ``after`` value for the page after ``position`` of ``user_id``'s list."""
    if position.created_at.tzinfo is None:
        raise ValueError("a position's created_at must be aware")
    packed = _POSITION.pack(user_id, _micros(position.created_at), position.id.bytes)
    return base64.urlsafe_b64encode(packed + _mac(key, packed)).rstrip(b"=").decode()


def decode_cursor(key: bytes, user_id: int, cursor: str) -> Position:
    """The position ``cursor`` names, or ``OrderRuleError`` if it is malformed or not ours."""
    if len(cursor) > _MAX_CURSOR_CHARS or not cursor.isascii():
        raise OrderRuleError("after", "after: not a cursor this service issued")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise OrderRuleError("after", "after: not a cursor this service issued") from None
    if len(raw) != _CURSOR_BYTES:
        raise OrderRuleError("after", "after: not a cursor this service issued")
    packed, mac = raw[: _POSITION.size], raw[_POSITION.size :]
    # Canonical form only: another spelling of the same bytes is not the cursor we issued.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != cursor:
        raise OrderRuleError("after", "after: not a cursor this service issued")
    if not hmac.compare_digest(mac, _mac(key, packed)):
        raise OrderRuleError("after", "after: the cursor was altered or is not for this list")
    owner, micros, order_id = _POSITION.unpack(packed)
    if owner != user_id:
        raise OrderRuleError("after", "after: the cursor was altered or is not for this list")
    try:
        created_at = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise OrderRuleError("after", "after: not a cursor this service issued") from None
    return Position(created_at, uuid.UUID(bytes=order_id))


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """Which of a user's orders a page lists: any of ``statuses`` (all when empty), created
    in ``[created_from, created_to)`` (either bound open when None)."""

    statuses: tuple[OrderStatus, ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None


ALL_ORDERS = OrderFilter()


def order_filter(
    statuses: Sequence[OrderStatus],
    created_from: datetime | None,
    created_to: datetime | None,
) -> OrderFilter:
    """The filter, or ``OrderRuleError``.

    A naive datetime is refused rather than read as UTC: ``2026-01-01T10:00`` from a client
    in another zone means another instant, and guessing would answer the wrong orders without
    a sign; ISO 8601 with ``Z`` or an offset costs the client nothing. An empty range
    (``created_to`` not after ``created_from``) is refused too: it can only be a mistake.
    """
    for name, moment in (("created_from", created_from), ("created_to", created_to)):
        if moment is not None and moment.utcoffset() is None:
            raise OrderRuleError(name, f"{name}: give a time zone (Z or an offset such as +02:00)")
    if created_from is not None and created_to is not None and created_to <= created_from:
        raise OrderRuleError("created_to", "created_to: must be after created_from")
    return OrderFilter(
        statuses=tuple(dict.fromkeys(statuses)),  # a status given twice is asked for once
        created_from=_in_utc("created_from", created_from),
        created_to=_in_utc("created_to", created_to),
    )


def _in_utc(name: str, moment: datetime | None) -> datetime | None:
    """The same instant in UTC; one that has none (0001-01-01T00:00+01:00) is refused."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise OrderRuleError(name, f"{name}: out of range") from None


def paging_style(offset: int | None, after: str | None) -> None:
    """``offset`` and ``after`` are two answers to "where does the page start": one at most."""
    if offset is not None and after is not None:
        raise OrderRuleError("after", "give either offset or after, not both")
