"""GET /orders/user/{user_id}: your own orders, newest first; anybody else's list is a 403.

Two paging styles: ``offset`` (kept for the clients that use it) and ``after``, the keyset
cursor (``pages.py`` beside this file), whose cost does not grow with the depth. Every answer that
has more orders carries ``Link: <…>; rel="next"`` with the keyset cursor, an answer by offset
too: the contract says "every answer that has more", and it lets an offset client switch to
the cheap walk at any page. The link is a path-absolute reference (``/orders/user/1?…``),
resolved by the client against the URL it asked (RFC 8288 §3.1): behind a proxy the host and
scheme this process sees are not the ones the client used, and a relative reference cannot
get them wrong.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath

from features.list_user_orders.pages import (
    Position,
    cursor_key,
    decode_cursor,
    encode_cursor,
    order_filter,
    paging_style,
)
from features.list_user_orders.queries import list_orders
from features.list_user_orders.schemas import (
    DEFAULT_LIMIT,
    LINK_HEADER,
    After,
    CreatedFrom,
    CreatedTo,
    Limit,
    Offset,
    Statuses,
)
from shared.http.auth import CurrentUser
from shared.http.errors import UnprocessableEntity, error_responses
from shared.http.openapi import documented
from shared.orders.errors import OrderRuleError
from shared.orders.view import ORDER_EXAMPLE, OrderView, order_view
from shared.services import Services

# Query parameters the next link sets itself; every other one (the filters) is kept as sent.
_PAGING = frozenset({"limit", "offset", "after"})


@get(
    "/orders/user/{user_id:int}",
    operation_id="listUserOrders",
    operation_class=documented(answer=[ORDER_EXAMPLE]),
    tags=["orders"],
    summary="List your orders",
    description=(
        "Newest first (created_at, then id). Page by `after` (the cursor in the previous"
        ' answer\'s `Link: <…>; rel="next"`, same cost at any depth) or by `offset`; filter'
        " by `status` (repeatable) and `created_from` (inclusive) / `created_to` (exclusive)."
    ),
    response_headers=[LINK_HEADER],
    # 404: a user id that is not an integer matches no route.
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
async def list_user_orders(
    request: Request[Any, Any, Any],
    user_id: FromPath[int],
    current_user: NamedDependency[CurrentUser],
    services: NamedDependency[Services],
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = None,
    after: After = None,
    status: Statuses = None,
    created_from: CreatedFrom = None,
    created_to: CreatedTo = None,
) -> Response[list[OrderView]]:
    if user_id != current_user.id:
        raise PermissionDeniedException("you can only list your own orders")
    key = cursor_key(services.settings.jwt_secret)
    try:
        paging_style(offset, after)
        where = order_filter(status or (), created_from, created_to)
        position = decode_cursor(key, user_id, after) if after is not None else None
    except OrderRuleError as exc:
        raise UnprocessableEntity(exc.message, field=exc.field) from exc
    async with services.db.connect() as conn:  # one SELECT: no transaction needed
        # One row more than the page: whether it exists is whether there is a next page.
        rows = await list_orders(
            conn, user_id, limit + 1, offset=offset or 0, after=position, where=where
        )
    page = [order_view(row) for row in rows[:limit]]
    headers: dict[str, str] = {}
    if len(rows) > limit:
        last = rows[limit - 1]
        cursor = encode_cursor(key, user_id, Position(last.created_at, last.id))
        kept = [(k, v) for k, v in request.query_params.multi_items() if k not in _PAGING]
        query = urlencode([("limit", str(limit)), *kept, ("after", cursor)])
        headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
    return Response(page, headers=headers)
