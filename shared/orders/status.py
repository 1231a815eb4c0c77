"""The status machine: PENDING → PAID → SHIPPED, and PENDING or PAID → CANCELED.

SHIPPED and CANCELED are final. Setting the status an order already has is a no-op, not a
move, so it is never refused.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from shared.orders.errors import OrderRuleError


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    CANCELED = "CANCELED"


allowed_transitions: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.CANCELED}),
    OrderStatus.PAID: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELED}),
    OrderStatus.SHIPPED: frozenset(),
    OrderStatus.CANCELED: frozenset(),
}


class StatusMoveRefused(OrderRuleError):
    """A move the machine does not allow; ``current`` is what a client needs to retry sensibly."""

    def __init__(self, current: OrderStatus, target: OrderStatus) -> None:
        super().__init__(
            "status",
            f"cannot change status from {current.value} to {target.value};"
            f" the order is {current.value}",
        )
        self.current = current
        self.target = target


def statuses_that_can_move_to(target: OrderStatus) -> list[OrderStatus]:
    """The sources a conditional UPDATE may match, so the database applies the rule atomically."""
    return [source for source, targets in allowed_transitions.items() if target in targets]


def check_move(current: OrderStatus, target: OrderStatus) -> bool:
    """True for a move, False for the no-op (already there); a refused move raises."""
    if current == target:
        return False
    if target not in allowed_transitions[current]:
        raise StatusMoveRefused(current, target)
    return True
