"""POST /orders: validate, build the order's event, insert the order with it in one statement
(or transaction), publish the event after the commit, cache the order.

With an ``Idempotency-Key`` a retried request gets the first order back (same id, no second
order, no second event); the same key with a different body is a 422.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from litestar import Response, post
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.params import HeaderParameter, JSONBody
from litestar.status_codes import HTTP_201_CREATED
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from features.create_order.queries import (
    find_by_idempotency_key,
    insert_order,
    release_expired_key,
)
from features.create_order.schemas import (
    CREATE_ORDER_EXAMPLE,
    MAX_IDEMPOTENCY_KEY,
    NO_NUL_PATTERN,
    CreateOrderRequest,
    checked_order,
)
from shared.http.auth import CurrentUser
from shared.http.errors import UnprocessableEntity, error_responses
from shared.http.openapi import documented
from shared.messaging.events import new_order_event
from shared.messaging.outbox import new_order_message
from shared.orders.money import request_fingerprint
from shared.orders.view import ORDER_EXAMPLE, OrderView, order_view
from shared.services import Services

logger = logging.getLogger(__name__)

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        pattern=NO_NUL_PATTERN,
    ),
]


@post(
    "/orders",
    operation_id="createOrder",
    operation_class=documented(request=CREATE_ORDER_EXAMPLE, answer=ORDER_EXAMPLE),
    status_code=HTTP_201_CREATED,
    tags=["orders"],
    summary="Create an order",
    responses=error_responses(401, 413, 415, 422, 429, 503),
)
async def create_order(
    data: JSONBody[CreateOrderRequest],
    current_user: NamedDependency[CurrentUser],
    services: NamedDependency[Services],
    idempotency_key: IdempotencyKey = None,
) -> Response[OrderView]:
    items, total = checked_order(data)
    fingerprint = request_fingerprint(items, total) if idempotency_key else None
    # Without a key the order is one statement (its outbox row included), atomic alone: no
    # transaction round trips. With one, the look-ups and the insert share a transaction.
    db = services.db
    try:
        async with db.begin() if idempotency_key else db.connect() as conn:
            if idempotency_key:
                replay = await _replay(conn, current_user.id, idempotency_key, fingerprint)
                if replay is not None:
                    return _created(order_view(replay))
                await release_expired_key(conn, current_user.id, idempotency_key)
            event = new_order_event(user_id=current_user.id, total_price=total)
            message = new_order_message(event)  # encoded once: the outbox row, then the relay
            row = await insert_order(
                conn,
                event,
                message,
                items=items,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
            )
            if row is None:
                # A concurrent request with the same key committed first: ON CONFLICT waited
                # for it, so (read committed) the next statement sees its order.
                replay = await _replay(conn, current_user.id, idempotency_key, fingerprint)
                if replay is None:
                    raise UnprocessableEntity(
                        "Idempotency-Key is in use; retry", field="Idempotency-Key"
                    )
                return _created(order_view(replay))
    except IntegrityError as exc:  # the user was deleted after the token was checked
        raise NotAuthorizedException("user no longer exists") from exc
    view = order_view(row)
    logger.info("order created", extra={"order_id": str(view.id)})
    # publish after the commit, off the request path
    services.outbox_relay.submit(message)
    await services.order_cache.cache_order(view)
    return _created(view)


async def _replay(
    conn: AsyncConnection, user_id: int, key: str | None, fingerprint: bytes | None
) -> Row[Any] | None:
    if key is None:
        return None
    found = await find_by_idempotency_key(conn, user_id, key)
    if found is None:
        return None
    row, first_fingerprint = found
    if first_fingerprint != fingerprint:
        raise UnprocessableEntity(
            "Idempotency-Key was already used with a different request body",
            field="Idempotency-Key",
        )
    return row


def _created(view: OrderView) -> Response[OrderView]:
    return Response(view, status_code=HTTP_201_CREATED, headers={"Location": f"/orders/{view.id}"})
