"""The status machine, over every pair of statuses: no service, no app."""

from __future__ import annotations

from itertools import product

import pytest

from shared.orders.errors import OrderRuleError
from shared.orders.status import (
    OrderStatus,
    StatusMoveRefused,
    allowed_transitions,
    check_move,
    statuses_that_can_move_to,
)

PENDING, PAID, SHIPPED, CANCELED = (
    OrderStatus.PENDING,
    OrderStatus.PAID,
    OrderStatus.SHIPPED,
    OrderStatus.CANCELED,
)
# The contract (../shared/API.md), written out pair by pair rather than derived from the table.
MOVES = {(PENDING, PAID), (PAID, SHIPPED), (PENDING, CANCELED), (PAID, CANCELED)}
PAIRS = list(product(OrderStatus, repeat=2))
REFUSED = [(a, b) for a, b in PAIRS if a != b and (a, b) not in MOVES]


def test_the_enum_is_the_four_statuses_the_api_shows() -> None:
    assert [s.value for s in OrderStatus] == ["PENDING", "PAID", "SHIPPED", "CANCELED"]


def test_the_table_covers_every_status() -> None:
    assert set(allowed_transitions) == set(OrderStatus)


@pytest.mark.parametrize(("current", "target"), sorted(MOVES))
def test_allowed_moves_are_moves(current: OrderStatus, target: OrderStatus) -> None:
    assert check_move(current, target) is True
    assert current in statuses_that_can_move_to(target)


@pytest.mark.parametrize(("current", "target"), REFUSED)
def test_every_other_move_is_refused_naming_the_current_status(
    current: OrderStatus, target: OrderStatus
) -> None:
    with pytest.raises(StatusMoveRefused) as refused:
        check_move(current, target)
    assert refused.value.current is current
    assert refused.value.target is target
    assert isinstance(refused.value, OrderRuleError)
    assert refused.value.field == "status"
    assert refused.value.message == (
        f"cannot change status from {current} to {target}; the order is {current}"
    )
    assert current not in statuses_that_can_move_to(target)


@pytest.mark.parametrize("status", list(OrderStatus))
def test_setting_the_status_an_order_has_is_a_no_op(status: OrderStatus) -> None:
    assert check_move(status, status) is False
    # The no-op is not a move: the conditional UPDATE must not match it (updated_at stays).
    assert status not in statuses_that_can_move_to(status)


@pytest.mark.parametrize("status", list(OrderStatus))
def test_only_shipped_and_canceled_are_final(status: OrderStatus) -> None:
    assert (not allowed_transitions[status]) is (status in {SHIPPED, CANCELED})


@pytest.mark.parametrize("status", [SHIPPED, CANCELED])
def test_nothing_leaves_a_final_status(status: OrderStatus) -> None:
    for target in OrderStatus:
        if target != status:
            with pytest.raises(StatusMoveRefused):
                check_move(status, target)


def test_nothing_moves_back_to_pending() -> None:
    assert statuses_that_can_move_to(PENDING) == []


@pytest.mark.parametrize("target", list(OrderStatus))
def test_the_sources_of_a_target_are_exactly_the_allowed_moves_into_it(
    target: OrderStatus,
) -> None:
    assert set(statuses_that_can_move_to(target)) == {a for a, b in MOVES if b == target}
