"""GET /orders/user/{user_id}: your own orders, newest first; anybody else's list is a 403."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath

from features.list_user_orders.queries import list_orders
from features.list_user_orders.schemas import DEFAULT_LIMIT, Limit, Offset
from shared.http.auth import CurrentUser
from shared.http.errors import error_responses
from shared.orders.view import OrderView, order_view
from shared.services import Services


@get(
    "/orders/user/{user_id:int}",
    tags=["orders"],
    summary="List your orders",
    # 404: a user id that is not an integer matches no route.
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
async def list_user_orders(
    user_id: FromPath[int],
    current_user: NamedDependency[CurrentUser],
    services: NamedDependency[Services],
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> list[OrderView]:
    if user_id != current_user.id:
        raise PermissionDeniedException("you can only list your own orders")
    async with services.db.connect() as conn:  # one SELECT: no transaction needed
        rows = await list_orders(conn, user_id, limit, offset)
    return [order_view(row) for row in rows]
