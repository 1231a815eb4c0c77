"""The order as a client sees it right after the change an event reports (pure).

The feed reads the order as it is now, which may already be past the event (a PATCH right
after the job, the feed catching up after an outage): the event's own fields are laid over
it, so its status and times are the ones that change set.
"""

from __future__ import annotations

import msgspec

from shared.messaging.events import (
    NewOrderEvent,
    OrderEvent,
    OrderProcessedEvent,
    OrderStatusChangedEvent,
)
from shared.orders.status import OrderStatus
from shared.orders.view import OrderView


def view_after(current: OrderView, event: OrderEvent) -> OrderView:
    """``current`` with what ``event`` set; the other fields stay as they are now."""
    if isinstance(event, NewOrderEvent):
        return msgspec.structs.replace(
            current,
            status=OrderStatus.PENDING,
            updated_at=current.created_at,
            processed_at=None,
        )
    if isinstance(event, OrderStatusChangedEvent):
        return msgspec.structs.replace(current, status=event.to, updated_at=event.updated_at)
    if isinstance(event, OrderProcessedEvent):
        return msgspec.structs.replace(current, processed_at=event.processed_at)
    raise TypeError(f"not an order event: {type(event).__name__}")
