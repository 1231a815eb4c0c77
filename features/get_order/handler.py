"""GET /orders/{order_id}: Redis first, PostgreSQL on a miss (which fills the cache).

A hit is served as the stored bytes. Ownership is checked on hits and misses alike, and
somebody else's order is a 404 exactly like a missing one.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from litestar import MediaType, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.security.jwt import Token
from litestar.types import Scope

from features.get_order.schemas import owner_decoder
from shared.http.auth import CurrentUser
from shared.http.errors import error_responses
from shared.http.openapi import documented
from shared.http.rate_limit import prefetch, prefetched
from shared.orders.errors import ORDER_NOT_FOUND
from shared.orders.queries import find_own_order
from shared.orders.view import ORDER_EXAMPLE, OrderView, order_view
from shared.services import services_of


def cache_key(scope: Scope) -> str:
    """The order's cache key, for the limiter to read in its round trip."""
    order_id = cast("uuid.UUID", scope["path_params"]["order_id"])  # the router parsed it
    return services_of(scope["litestar_app"]).order_cache.key(order_id)


@get(
    "/orders/{order_id:uuid}",
    operation_id="getOrder",
    operation_class=documented(answer=ORDER_EXAMPLE),
    tags=["orders"],
    summary="Get one of your orders",
    # The body is the cached bytes of an OrderView; the schema says so.
    responses={
        200: ResponseSpec(OrderView, description="the order"),
        **error_responses(401, 404, 429, 503),
    },
    opt=prefetch(cache_key),  # the cached order comes with the limiter's round trip
)
async def get_order(
    order_id: FromPath[uuid.UUID], request: Request[CurrentUser, Token, Any]
) -> Response[bytes]:
    # The hottest route asks for no injected dependencies (each costs per request, measured
    # in BENCHMARKS.md): the caller and the services come straight from the request, and a
    # database connection is taken only on a miss.
    user_id = request.user.id
    services = services_of(request.app)
    order_cache = services.order_cache
    cached = await order_cache.get_raw(
        order_id, prefetched(request.scope, cache_key(request.scope))
    )
    if cached is not None:
        if owner_decoder.decode(cached).user_id != user_id:
            raise NotFoundException(ORDER_NOT_FOUND)
        return Response(cached, media_type=MediaType.JSON, headers={"X-Cache": "HIT"})
    async with services.db.connect() as connection:  # one SELECT, no transaction
        row = await find_own_order(connection, order_id, user_id)
    if row is None:
        raise NotFoundException(ORDER_NOT_FOUND)
    encoded = await order_cache.cache_order(order_view(row))
    return Response(encoded, media_type=MediaType.JSON, headers={"X-Cache": "MISS"})
