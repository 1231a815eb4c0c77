"""The rules of the live stream (GET /orders/events), without I/O: event names, positions in a
user's event log, and where a stream starts or catches up from.

A position is a Redis stream entry id, ``<ms>-<seq>``: opaque to clients, monotonic per user.
The API process and the consumer that feeds the log both follow these rules.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

# Bus event (routing key) → the stream's ``event:`` name.
STREAM_EVENT_NAMES: Final = {
    "new_order": "order_created",
    "order_status_changed": "order_status_changed",
    "order_processed": "order_processed",
}
RESET: Final = "reset"

Position = tuple[int, int]
ORIGIN: Final[Position] = (0, 0)  # before every entry: what an empty log's last id reads as
_POSITION = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_MAX = 2**64 - 1


def parse_position(text: str | None) -> Position | None:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``; None for anything else."""
    if text is None:
        return None
    match = _POSITION.match(text.strip())
    if match is None:
        return None
    ms, seq = int(match[1]), int(match[2])
    if ms > _MAX or seq > _MAX:
        return None
    return ms, seq


def format_position(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


class LogState(msgspec.Struct, frozen=True):
    """What the log says, read for one position: its last entry ever added, whether the
    position's entry is still in it, and whether it still holds every entry it was given
    (none trimmed)."""

    last: Position
    holds_position: bool
    complete: bool


class Start(msgspec.Struct, frozen=True):
    """Where a stream starts: after ``after``; ``reset`` first when the log has lost events the
    client has not seen; ``read_log`` when entries after ``after`` may already be in the log."""

    after: Position
    reset: bool
    read_log: bool


def start_of_stream(last_event_id: str | None, log: LogState | None) -> Start:
    """Where a new stream starts, given its ``Last-Event-ID`` and the log (None: no log).

    - no ``Last-Event-ID``: live from the log's end;
    - an id the log still covers (nothing after it trimmed, not beyond its end): every entry
      after it, then live;
    - anything else (malformed, from before a trim, unknown, the log expired): ``reset``,
      then live from the log's end.
    """
    end = log.last if log is not None else ORIGIN
    if last_event_id is None:
        return Start(after=end, reset=False, read_log=False)
    position = parse_position(last_event_id)
    if position is None or log is None or not covers(log, position):
        return Start(after=end, reset=True, read_log=False)
    return Start(after=position, reset=False, read_log=position < log.last)


def covers(log: LogState, position: Position) -> bool:
    """True when every entry after ``position`` is still in the log (``log`` read for it).

    A log is trimmed from its start only, so while ``position``'s own entry is there,
    everything after it is too; an id that is not (trimmed, expired, never given) is not
    vouched for. ``ORIGIN`` (a stream that began before the log existed) is covered while
    the log has lost nothing.
    """
    if position == ORIGIN:
        return log.complete
    return log.holds_position


Action = Literal["send", "skip", "catch_up"]


def on_notice(last_sent: Position, entry: Position, previous: Position) -> Action:
    """What a stream does with a live notice of ``entry`` (added right after ``previous``).

    ``skip`` what was sent already (nothing twice); ``send`` the entry that follows the last
    one sent; a notice that does not follow it means one was missed (pub/sub is at most once),
    so ``catch_up`` from the log, which holds every entry in order.
    """
    if entry <= last_sent:
        return "skip"
    if previous == last_sent:
        return "send"
    return "catch_up"
