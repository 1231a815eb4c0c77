"""PATCH /orders/{id}: the body, and the status machine it must obey."""

from __future__ import annotations

import msgspec

from shared.models import OrderStatus


class PatchOrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    status: OrderStatus


# PENDING → PAID → SHIPPED, and PENDING or PAID → CANCELED. SHIPPED and CANCELED are final.
allowed_transitions: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.CANCELED}),
    OrderStatus.PAID: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELED}),
    OrderStatus.SHIPPED: frozenset(),
    OrderStatus.CANCELED: frozenset(),
}


def statuses_that_can_move_to(target: OrderStatus) -> list[OrderStatus]:
    return [source for source, targets in allowed_transitions.items() if target in targets]
