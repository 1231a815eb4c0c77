"""PATCH /orders/{id}: the body. The status machine it must obey is the domain's
(shared/orders/status.py)."""

from __future__ import annotations

import msgspec

from shared.orders import OrderStatus


class PatchOrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    status: OrderStatus
