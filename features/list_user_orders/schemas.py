"""GET /orders/user/{user_id}: paging bounds and filters. The items are the shared ``OrderView``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar.datastructures import ResponseHeader
from litestar.params import Parameter

from shared.orders.status import OrderStatus

DEFAULT_LIMIT = 50
MAX_LIMIT = 100

MAX_OFFSET = 1_000_000

Limit = Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="page size, 1..100")]
Offset = Annotated[
    int | None,
    Parameter(ge=0, le=MAX_OFFSET, description="orders to skip (default 0); not with `after`"),
]
After = Annotated[
    str | None,
    Parameter(
        max_length=64,
        description=(
            'opaque cursor: the page after the one whose `Link: <…>; rel="next"` gave it;'
            " not with `offset`. A malformed or altered cursor is a 422"
        ),
    ),
]
Statuses = Annotated[
    list[OrderStatus] | None,
    Parameter(description="only orders in any of these statuses (repeat the parameter)"),
]
CreatedFrom = Annotated[
    datetime | None,
    Parameter(description="only orders created at or after this instant (ISO 8601 with a zone)"),
]
CreatedTo = Annotated[
    datetime | None,
    Parameter(description="only orders created before this instant (ISO 8601 with a zone)"),
]

LINK_HEADER = ResponseHeader(
    name="Link",
    description=(
        'RFC 8288: `<…?limit=50&after=CURSOR>; rel="next"` when there are more orders (the'
        " request's filters kept, a reference relative to this request's URL); absent on the"
        " last page"
    ),
    value='</orders/user/1?limit=50&after=CURSOR>; rel="next"',  # documents a string header
    documentation_only=True,
)
