"""GET /orders/user/{user_id}: paging bounds. The items are the shared ``OrderView``."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

DEFAULT_LIMIT = 50
MAX_LIMIT = 100

MAX_OFFSET = 1_000_000

Limit = Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="page size, 1..100")]
Offset = Annotated[int, Parameter(ge=0, le=MAX_OFFSET, description="orders to skip")]
