"""The user directory's vouching rule (shared/accounts/user_directory.py), on a fake clock.

No service: the directory is never started, and ``exists`` (the only part that asks
PostgreSQL) is not called. Remembered ids are vouched for while deletions reach the process,
and for ``max_staleness_s`` after the link was lost; past that, memory is dropped.
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from shared.accounts.user_directory import UserDirectory, still_current
from shared.db import Database

BOUND_S = 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def directory(clock: FakeClock) -> UserDirectory:
    unused = cast("Database", None)  # vouching never reaches the database
    return UserDirectory(unused, "postgresql://unused", BOUND_S, clock=clock)


def remember(directory: UserDirectory, *user_ids: int) -> None:
    """What a lookup leaves behind while the listener is up."""
    state = cast("Any", directory)
    state._listening = True
    state._known.update(user_ids)


def lose_the_link(directory: UserDirectory, clock: FakeClock) -> None:
    """What the listener records when its connection drops."""
    state = cast("Any", directory)
    state._listening = False
    state._lost_at = clock()


def test_while_listening_a_known_user_is_vouched_for_and_an_unknown_is_not(
    directory: UserDirectory,
) -> None:
    remember(directory, 7)
    assert directory.vouches_for(7)
    assert not directory.vouches_for(8)


def test_after_the_link_is_lost_known_users_are_vouched_for_up_to_the_bound(
    directory: UserDirectory, clock: FakeClock
) -> None:
    remember(directory, 7)
    lose_the_link(directory, clock)
    clock.now += BOUND_S
    assert directory.vouches_for(7)


def test_past_the_bound_nothing_is_vouched_for_and_memory_is_dropped(
    directory: UserDirectory, clock: FakeClock
) -> None:
    remember(directory, 7, 9)
    lose_the_link(directory, clock)
    clock.now += BOUND_S + 0.001
    assert not directory.vouches_for(7)
    clock.now -= 1  # even were the clock to agree again: the ids are gone
    assert not directory.vouches_for(9)


def test_a_user_forgotten_here_is_not_vouched_for_at_once(directory: UserDirectory) -> None:
    remember(directory, 7)
    directory.forget(7)
    assert not directory.vouches_for(7)


@pytest.mark.parametrize(
    ("listening", "lost_at", "now", "current"),
    [
        (True, None, 5000.0, True),  # deletions reach us
        (True, 100.0, 5000.0, True),  # listening again: an old loss does not matter
        (False, None, 5000.0, True),  # never connected: nothing was remembered without it
        (False, 1000.0, 1000.0, True),  # just lost
        (False, 1000.0, 1030.0, True),  # lost exactly the bound ago
        (False, 1000.0, 1030.5, False),  # lost longer ago than the bound
    ],
)
def test_memory_is_current_while_listening_and_for_the_bound_after_a_loss(
    listening: bool, lost_at: float | None, now: float, current: bool
) -> None:
    assert still_current(listening, lost_at, now, BOUND_S) is current
