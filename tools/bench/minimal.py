"""``litestar_minimal``: what the framework alone costs an authenticated cached read.

Litestar with its JWT bearer auth built exactly as the API builds it
(``shared.http.auth.build_auth``:
the same keys and algorithm, token class, required claims and bearer-header middleware) and
one route, ``GET /orders/{order_id:uuid}`` like the API's, that returns one Redis value as
JSON. No other middleware, no dependencies. The only change to the auth: the claims are
trusted as the ceiling trusts them, so no user directory (which needs the database) is asked.

It is the ceiling's job (tools/bench/ceiling.py) with Litestar in between, served the same way and
loaded like the cached GET, so "cached GET × minimal" is what the API adds on top of its
framework. Serve it with ``uvicorn tools.bench.minimal:create_app --factory --workers N``;
``BENCH_CEILING_KEY`` names the key.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from litestar import Litestar, MediaType, Response, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.security.jwt import Token

from shared.accounts.signing_keys import signing_keys
from shared.http.auth import CurrentUser, build_auth
from shared.redis import create_redis
from shared.settings import load_api_settings


async def trust_claims(
    token: Token, _connection: ASGIConnection[Any, Any, Any, Any]
) -> CurrentUser | None:
    """The API's check of the subject's form, without asking whether the user still exists."""
    if not token.sub.isascii() or not token.sub.isdigit():
        return None
    return CurrentUser(int(token.sub))


def create_app() -> Litestar:
    settings = load_api_settings()
    keys = signing_keys(
        settings.jwt_algorithm,
        settings.jwt_secret,
        settings.jwt_private_key,
        settings.jwt_previous_public_keys,
    )
    auth = build_auth(settings, keys, trust_claims)
    redis = create_redis(settings.redis_url)
    key = os.environ["BENCH_CEILING_KEY"]

    @get("/orders/{order_id:uuid}")
    async def one_value(order_id: uuid.UUID) -> Response[bytes]:
        value: bytes | None = await redis.get(key)
        if value is None:
            raise NotFoundException
        return Response(value, media_type=MediaType.JSON)

    async def close_redis() -> None:
        await redis.aclose()

    return Litestar(
        route_handlers=[one_value],
        on_app_init=[auth.on_app_init],
        on_shutdown=[close_redis],
        debug=False,
    )
