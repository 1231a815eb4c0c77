"""The keyset cursor and the page filters (features/list_user_orders/pages.py): pure code."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from features.list_user_orders.pages import (
    Position,
    cursor_key,
    decode_cursor,
    encode_cursor,
    order_filter,
    paging_style,
)
from shared.orders.errors import OrderRuleError
from shared.orders.status import OrderStatus

KEY = cursor_key("a secret of at least thirty-two bytes, for tests")
POSITION = Position(datetime(2026, 12, 6, 18, 0, 0, 123456, tzinfo=UTC), uuid.uuid4())


def test_a_cursor_names_the_position_it_was_made_from() -> None:
    cursor = encode_cursor(KEY, 7, POSITION)
    assert decode_cursor(KEY, 7, cursor) == POSITION


def test_a_cursor_is_url_safe_and_short() -> None:
    cursor = encode_cursor(KEY, 7, POSITION)
    assert len(cursor) <= 64
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_a_cursor_keeps_the_microsecond_and_any_zone_becomes_utc() -> None:
    elsewhere = POSITION.created_at.astimezone(timezone(timedelta(hours=-5)))
    cursor = encode_cursor(KEY, 7, Position(elsewhere, POSITION.id))
    decoded = decode_cursor(KEY, 7, cursor)
    assert decoded.created_at == POSITION.created_at
    assert decoded.created_at.microsecond == 123456


def test_a_naive_position_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        encode_cursor(KEY, 7, Position(datetime(2026, 1, 1), POSITION.id))


def test_every_altered_character_is_refused() -> None:
    cursor = encode_cursor(KEY, 7, POSITION)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for at, char in enumerate(cursor):
        other = alphabet[(alphabet.index(char) + 1) % 64]
        with pytest.raises(OrderRuleError) as refused:
            decode_cursor(KEY, 7, cursor[:at] + other + cursor[at + 1 :])
        assert refused.value.field == "after"


def test_another_users_or_another_keys_cursor_is_refused() -> None:
    cursor = encode_cursor(KEY, 7, POSITION)
    with pytest.raises(OrderRuleError, match="altered or is not for this list"):
        decode_cursor(KEY, 8, cursor)
    with pytest.raises(OrderRuleError, match="altered or is not for this list"):
        decode_cursor(cursor_key("another secret of thirty-two bytes or more"), 7, cursor)


@pytest.mark.parametrize("cursor", ["", "x", "!!!!", "AAAA", "A" * 43, "A" * 65, "é" * 10, "a="])
def test_a_malformed_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(OrderRuleError, match="not a cursor this service issued"):
        decode_cursor(KEY, 7, cursor)


def test_a_cursor_with_padding_is_not_the_one_issued() -> None:
    cursor = encode_cursor(KEY, 7, POSITION)
    with pytest.raises(OrderRuleError):
        decode_cursor(KEY, 7, cursor + "=")


def test_the_key_is_derived_not_the_secret_itself() -> None:
    secret = "a secret of at least thirty-two bytes, for tests"
    assert cursor_key(secret) != secret.encode()
    assert cursor_key(secret) == KEY
    assert len(KEY) == 32


def test_a_filter_keeps_the_statuses_once_in_the_order_given() -> None:
    chosen = order_filter([OrderStatus.PAID, OrderStatus.PENDING, OrderStatus.PAID], None, None)
    assert chosen.statuses == (OrderStatus.PAID, OrderStatus.PENDING)


def test_a_filter_reads_any_zone_as_the_same_instant_in_utc() -> None:
    plus_two = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    chosen = order_filter([], plus_two, None)
    assert chosen.created_from == datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert chosen.created_from.tzinfo is UTC
    assert chosen.created_to is None


@pytest.mark.parametrize("field", ["created_from", "created_to"])
def test_a_naive_bound_is_refused(field: str) -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(OrderRuleError, match="time zone") as refused:
        order_filter([], **{"created_from": None, "created_to": None, field: naive})
    assert refused.value.field == field


@pytest.mark.parametrize("gap", [timedelta(0), timedelta(seconds=-1)])
def test_an_empty_range_is_refused(gap: timedelta) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(OrderRuleError, match="after created_from"):
        order_filter([], start, start + gap)


def test_offset_and_after_are_one_or_the_other() -> None:
    paging_style(None, None)
    paging_style(0, None)
    paging_style(None, "cursor")
    with pytest.raises(OrderRuleError, match="either offset or after"):
        paging_style(0, "cursor")


def test_a_bound_with_no_instant_in_utc_is_refused() -> None:
    """0001-01-01T00:00+01:00 is before year 1 in UTC: Python cannot hold it (was a 500)."""
    too_early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(OrderRuleError, match="out of range") as refused:
        order_filter([], too_early, None)
    assert refused.value.field == "created_from"
