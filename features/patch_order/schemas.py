"""PATCH /orders/{id}: the body, and the 409 that names the current status. The status
machine it must obey is the domain's (shared/orders/status.py)."""

from __future__ import annotations

import msgspec

from shared.http.errors import ErrorBody
from shared.orders.status import OrderStatus
from shared.orders.view import ORDER_EXAMPLE

PATCH_ORDER_EXAMPLE = {"status": "PAID"}  # the README walk-through's move
PATCHED_ORDER_EXAMPLE = {**ORDER_EXAMPLE, "status": "PAID", "updated_at": "2026-01-05T09:32:00Z"}


class PatchOrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    status: OrderStatus


class StatusConflict(ErrorBody, kw_only=True):
    """The 409's body: the error, and the status the order has now (to retry sensibly)."""

    current_status: OrderStatus
