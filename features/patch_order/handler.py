"""PATCH /orders/{order_id}: move the status along the machine, then refresh the cache.

A move stages its ``order_status_changed`` event in its own UPDATE (features/patch_order/
queries.py); the relay publishes it after the commit, the sweeper if the relay could not.

The cache is written after the commit and before the response, with a version guard, so
once this returns no GET can see the old status.
"""

from __future__ import annotations

import uuid
from typing import Any

from litestar import MediaType, Request, Response, patch
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_409_CONFLICT

from features.patch_order.queries import move_status
from features.patch_order.schemas import (
    PATCH_ORDER_EXAMPLE,
    PATCHED_ORDER_EXAMPLE,
    PatchOrderRequest,
    StatusConflict,
)
from shared.http.auth import CurrentUser
from shared.http.errors import error_responses
from shared.http.openapi import documented
from shared.orders.errors import ORDER_NOT_FOUND
from shared.orders.queries import find_own_order
from shared.orders.status import (
    OrderStatus,
    StatusMoveRefused,
    check_move,
    statuses_that_can_move_to,
)
from shared.orders.view import OrderView, order_view
from shared.services import Services


def _refused(_: Request[Any, Any, Any], exc: StatusMoveRefused) -> Response[StatusConflict]:
    """The domain's refusal as the 409 clients know: the error shape plus ``current_status``."""
    body = StatusConflict(
        status_code=HTTP_409_CONFLICT,
        detail=exc.message,
        field=exc.field,
        current_status=exc.current,
    )
    return Response(body, status_code=HTTP_409_CONFLICT, media_type=MediaType.JSON)


@patch(
    "/orders/{order_id:uuid}",
    operation_id="patchOrder",
    operation_class=documented(request=PATCH_ORDER_EXAMPLE, answer=PATCHED_ORDER_EXAMPLE),
    tags=["orders"],
    summary="Change an order's status",
    responses={
        **error_responses(401, 404, 413, 415, 422, 429, 503),
        HTTP_409_CONFLICT: ResponseSpec(
            StatusConflict, description="conflict", generate_examples=False
        ),
    },
    exception_handlers={StatusMoveRefused: _refused},
)
async def patch_order(
    order_id: FromPath[uuid.UUID],
    data: JSONBody[PatchOrderRequest],
    current_user: NamedDependency[CurrentUser],
    services: NamedDependency[Services],
) -> OrderView:
    sources = statuses_that_can_move_to(data.status)
    async with services.db.connect() as conn:
        # Statuses only move forward, at most twice an order: each retry follows a move made
        # meanwhile, so this ends within len(OrderStatus) tries.
        for _ in OrderStatus:
            # One UPDATE, committed as it runs (autocommit): the rule applied atomically.
            moved = await move_status(conn, order_id, current_user.id, data.status, sources)
            if moved is not None:
                break
            # It matched nothing: read the order to say why, by the domain's rule.
            current = await find_own_order(conn, order_id, current_user.id)
            if current is None:
                raise NotFoundException(ORDER_NOT_FOUND)
            # The row has the driver's values (``Prepared``): the status as its text.
            if not check_move(OrderStatus(current.status), data.status):  # refused: 409
                return order_view(current)  # already there: a no-op
            # Allowed from what it is now: it moved between the UPDATE and the read; again.
        else:
            raise RuntimeError("an order's status kept moving")  # the machine has no cycle
    row, event = moved
    services.outbox_relay.submit(event)  # publish after the commit, off the request path
    view = order_view(row)
    await services.order_cache.cache_order(view)
    return view
