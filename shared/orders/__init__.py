"""The orders domain: the status machine, money and the public view, as pure code.

Nothing in ``status``, ``money``, ``view`` or ``errors`` does I/O or imports a database,
Redis or Litestar, so their unit tests (tests/unit/) run without services, and
``shared.models`` can take ``OrderStatus`` from here without an import cycle.

``queries`` holds the statements several slices share. Its names are importable from
``shared.orders`` too, as they were before the domain was split out, but only on first use
(PEP 562): importing the domain never imports SQLAlchemy or the models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from shared.orders.errors import ORDER_NOT_FOUND, OrderRuleError
from shared.orders.money import (
    CENT,
    MAX_TOTAL,
    MoneyInput,
    check_price,
    checked_total,
    computed_total,
    has_cents_at_most,
    parse_amount,
    request_fingerprint,
)
from shared.orders.status import (
    OrderStatus,
    StatusMoveRefused,
    allowed_transitions,
    check_move,
    statuses_that_can_move_to,
)
from shared.orders.view import (
    Money,
    OrderItem,
    OrderRecord,
    OrderView,
    order_view,
)

if TYPE_CHECKING:
    from shared.orders.queries import NEXT_UPDATED_AT, ORDER_VIEW_COLUMNS, find_own_order

__all__ = [
    "CENT",
    "MAX_TOTAL",
    "NEXT_UPDATED_AT",
    "ORDER_NOT_FOUND",
    "ORDER_VIEW_COLUMNS",
    "Money",
    "MoneyInput",
    "OrderItem",
    "OrderRecord",
    "OrderRuleError",
    "OrderStatus",
    "OrderView",
    "StatusMoveRefused",
    "allowed_transitions",
    "check_move",
    "check_price",
    "checked_total",
    "computed_total",
    "find_own_order",
    "has_cents_at_most",
    "order_view",
    "parse_amount",
    "request_fingerprint",
    "statuses_that_can_move_to",
]

_QUERIES = frozenset({"NEXT_UPDATED_AT", "ORDER_VIEW_COLUMNS", "find_own_order"})


def __getattr__(name: str) -> object:
    if name in _QUERIES:
        return getattr(importlib.import_module("shared.orders.queries"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
