"""The live stream's rules (shared/orders/event_positions.py), without Redis."""

from __future__ import annotations

import pytest

from shared.messaging.events import EVENT_NAMES
from shared.orders.event_positions import (
    ORIGIN,
    STREAM_EVENT_NAMES,
    LogState,
    Start,
    covers,
    format_position,
    on_notice,
    parse_position,
    start_of_stream,
)

LOG = LogState(last=(200, 0), holds_position=True, complete=False)
TRIMMED = LogState(last=(200, 0), holds_position=False, complete=False)


def test_every_bus_event_has_a_stream_name() -> None:
    assert set(STREAM_EVENT_NAMES) == set(EVENT_NAMES)
    assert STREAM_EVENT_NAMES["new_order"] == "order_created"


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("1700000000000-0", (1700000000000, 0)),
        (" 5-7 ", (5, 7)),
        ("0-0", ORIGIN),
        ("5", None),
        ("5-", None),
        ("-5-1", None),
        ("a-b", None),
        ("1-2-3", None),
        ("", None),
        (None, None),
        (f"{2**64}-0", None),
        ("1" * 21 + "-0", None),
    ],
)
def test_positions_parse_strictly(text: str | None, position: tuple[int, int] | None) -> None:
    assert parse_position(text) == position


def test_positions_compare_by_time_then_sequence() -> None:
    assert (5, 10) < (6, 0) < (6, 1)
    assert format_position((6, 1)) == "6-1"


def test_a_stream_without_last_event_id_starts_live_at_the_end() -> None:
    assert start_of_stream(None, LOG) == Start(after=(200, 0), reset=False, read_log=False)
    assert start_of_stream(None, None) == Start(after=ORIGIN, reset=False, read_log=False)


def test_a_position_still_in_the_log_resumes_after_it() -> None:
    assert start_of_stream("150-3", LOG) == Start(after=(150, 3), reset=False, read_log=True)
    assert start_of_stream("200-0", LOG) == Start(after=(200, 0), reset=False, read_log=False)


@pytest.mark.parametrize("last_event_id", ["150-3", "garbage", "", "999-0"])
def test_a_position_the_log_does_not_hold_resets(last_event_id: str) -> None:
    assert start_of_stream(last_event_id, TRIMMED) == Start(
        after=(200, 0), reset=True, read_log=False
    )


def test_a_position_with_no_log_at_all_resets() -> None:
    assert start_of_stream("150-3", None) == Start(after=ORIGIN, reset=True, read_log=False)


def test_the_origin_is_covered_only_while_the_log_lost_nothing() -> None:
    assert covers(LogState(last=(9, 0), holds_position=False, complete=True), ORIGIN)
    assert not covers(LogState(last=(9, 0), holds_position=False, complete=False), ORIGIN)


def test_a_notice_is_sent_skipped_or_sends_the_stream_to_the_log() -> None:
    assert on_notice(last_sent=(5, 0), entry=(6, 0), previous=(5, 0)) == "send"
    assert on_notice(last_sent=(5, 0), entry=(5, 0), previous=(4, 0)) == "skip"
    assert on_notice(last_sent=(5, 0), entry=(4, 0), previous=(3, 0)) == "skip"
    assert on_notice(last_sent=(5, 0), entry=(7, 0), previous=(6, 0)) == "catch_up"
    assert on_notice(last_sent=ORIGIN, entry=(7, 0), previous=ORIGIN) == "send"
