"""GET /orders/events: a Server-Sent Events stream of the caller's own orders.

Each event is ``id:`` (its position in the user's log), ``event:`` (``order_created``,
``order_status_changed``, ``order_processed``, or ``reset`` when the log no longer reaches
back to ``Last-Event-ID``) and ``data:`` (the order as GET /orders/{id} shows it after that
change). The stream logic is in ``stream.py``; the log is fed by the consumer
(features/feed_order_events).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.exceptions import ServiceUnavailableException, TooManyRequestsException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter
from litestar.response import ServerSentEvent
from litestar.security.jwt import Token

from features.order_events.stream import OrderStreams, UserStream
from shared.http.auth import CurrentUser
from shared.http.errors import error_responses
from shared.http.openapi import documented
from shared.orders.view import ORDER_EXAMPLE

EVENT_STREAM = "text/event-stream"
ORDER_STREAMS = "order_streams"  # the name app.py provides the process's OrderStreams by
# What a client reads first after POST /orders: one event, as the stream writes it.
STREAM_EXAMPLE = (
    "id: 1733562000000-0\nevent: order_created\ndata: "
    + msgspec.json.encode(ORDER_EXAMPLE).decode()
    + "\n\n"
)
TOO_MANY_STREAMS = "too many open event streams for this user; close one first"


@get(
    "/orders/events",
    operation_id="streamOrderEvents",
    operation_class=documented(answer=STREAM_EXAMPLE),
    tags=["orders"],
    summary="Your orders' changes, live (Server-Sent Events)",
    description=(
        "A text/event-stream of `order_created`, `order_status_changed` and "
        "`order_processed` events, each with `id:` (resume with `Last-Event-ID`) and "
        "`data:` (the order after the change); `event: reset` when the log no longer "
        "reaches back that far. A comment line every 15 s; the stream ends when the "
        "access token expires."
    ),
    media_type=EVENT_STREAM,
    responses={
        200: ResponseSpec(
            str,
            media_type=EVENT_STREAM,
            description="the stream: `id:`, `event:` and `data:` lines per event",
            generate_examples=False,
        ),
        **error_responses(401, 429, 503),
    },
)
async def stream_order_events(
    request: Request[CurrentUser, Token, Any],
    order_streams: NamedDependency[OrderStreams],
    last_event_id: Annotated[
        str | None,
        HeaderParameter(name="Last-Event-ID", description="the `id:` of the last event received"),
    ] = None,
) -> ServerSentEvent:
    if order_streams.closing:
        raise ServiceUnavailableException("shutting down; reconnect", headers={"Retry-After": "1"})
    user_id = request.user.id
    stream_id = await order_streams.open(user_id)
    if stream_id is None:
        raise TooManyRequestsException(TOO_MANY_STREAMS, headers={"Retry-After": "15"})
    stream = UserStream(order_streams, user_id, stream_id, request.auth.exp.timestamp())
    return ServerSentEvent(
        stream.run(last_event_id),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
