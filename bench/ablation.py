"""Variants of the API for measuring what one piece costs: ``bench/run.py --app bench.ablation:X``.

Each factory builds the real app with ``app.create_app`` and swaps exactly one piece, by
replacing what ``app`` imported; no application file changes. They exist to put numbers on
the optimisations listed in BENCHMARKS.md, not to be deployed.

- ``without_rate_limit``: the API-wide limiter is a pass-through (the /token one stays).
- ``rate_limit_without_lock``: Litestar's limiter, minus the per-process ``anyio.Lock`` it
  holds across its two Redis round trips (still two round trips, still not atomic).
- ``one_round_trip_rate_limit``: a fixed-window limiter that costs one pipelined Redis round
  trip (INCR + EXPIRE NX), counted atomically in Redis, with the same RateLimit-* headers.
- ``get_without_session``: GET /orders/{id} asks for a database session only on a cache miss
  (the real handler depends on ``db_session``, so every hit builds and closes one).
- ``niced_bcrypt``: bcrypt runs in a small pool of threads at nice 19, so the event loops
  win the CPU while logins queue.
- ``get_without_dependencies``: as ``get_without_session``, and the handler takes only the
  request (user from ``request.user``, the cache built once): Litestar resolves two or more
  dependencies of one handler in an anyio TaskGroup, one task each, on every request.
- ``both``: ``one_round_trip_rate_limit`` and ``get_without_session`` together.
- ``all_three``: ``one_round_trip_rate_limit`` and ``get_without_dependencies`` together.
- ``litestar_minimal``: not the API: Litestar with the same JWT auth and one route that
  returns one Redis value, the ceiling's job with the framework in between.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import bcrypt
from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import MutableScopeHeaders
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.middleware.rate_limit import DURATION_VALUES
from litestar.security.jwt import OAuth2PasswordBearerAuth, Token
from litestar.types import ASGIApp
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

import app as composition
import features.token.handler as token_slice
from features.get_order.schemas import owner_decoder
from shared.auth import TOKEN_PATH, CurrentUser, app_engine
from shared.order_cache import OrderCache
from shared.orders import find_own_order, order_view
from shared.redis import create_redis
from shared.settings import Settings, load_settings, parse_rate


def _build(**replacements: Any) -> Litestar:
    """``app.create_app()`` with some of the names ``app`` imported replaced."""
    originals = {name: vars(composition)[name] for name in replacements}
    for name, value in replacements.items():
        setattr(composition, name, value)
    try:
        return composition.create_app()
    finally:
        for name, value in originals.items():
            setattr(composition, name, value)


def without_rate_limit() -> Litestar:
    def passthrough(app: ASGIApp) -> ASGIApp:
        return app

    return _build(api_rate_limit=lambda settings: SimpleNamespace(middleware=passthrough))


Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class FixedWindowRateLimit:
    """One pipelined round trip per request: INCR the window's counter, EXPIRE it once."""

    def __init__(self, app: App, redis: Redis, settings: Settings) -> None:
        self._app = app
        self._redis = redis
        self._prefix = f"{settings.redis_prefix}fixed-window:"
        unit, self._limit = parse_rate(settings.rate_limit)
        self._window = DURATION_VALUES[unit]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(("/health", "/ready", "/schema")):
            await self._app(scope, receive, send)
            return
        client = scope.get("client")
        window = int(time.time()) // self._window
        key = f"{self._prefix}{client[0] if client else '127.0.0.1'}:{window}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, self._window, nx=True)
            count, _ = await pipe.execute()
        reset = str(self._window - int(time.time()) % self._window)
        headers = {
            "RateLimit-Policy": f"{self._limit}; w={self._window}",
            "RateLimit-Limit": str(self._limit),
            "RateLimit-Remaining": str(max(self._limit - int(count), 0)),
            "RateLimit-Reset": reset,
        }
        if int(count) > self._limit:
            body = b'{"status_code":429,"detail":"Too Many Requests"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"retry-after", reset.encode()),
                        *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                mutable = MutableScopeHeaders(message)  # type: ignore[arg-type]
                for name, value in headers.items():
                    mutable[name] = value
            await send(message)

        await self._app(scope, receive, send_with_headers)


def _one_round_trip_config(settings: Settings) -> SimpleNamespace:
    redis = create_redis(settings.redis_url)

    def middleware(app: App) -> App:
        return FixedWindowRateLimit(app, redis, settings)

    return SimpleNamespace(middleware=middleware)


def one_round_trip_rate_limit() -> Litestar:
    return _build(api_rate_limit=_one_round_trip_config)


@get("/orders/{order_id:uuid}", summary="Get one of your orders")
async def get_order_session_on_miss(
    order_id: uuid.UUID,
    current_user: NamedDependency[CurrentUser],
    order_cache: NamedDependency[OrderCache],
    request: Request[Any, Any, Any],
) -> Response[bytes]:
    """The real handler's logic, with the session opened only when the cache misses."""
    cached = await order_cache.get_raw(order_id)
    if cached is not None:
        if owner_decoder.decode(cached).user_id != current_user.id:
            raise NotFoundException("order not found")
        return Response(cached, media_type=MediaType.JSON, headers={"X-Cache": "HIT"})
    async with AsyncSession(app_engine(request.app)) as session:
        row = await find_own_order(session, order_id, current_user.id)
    if row is None:
        raise NotFoundException("order not found")
    encoded = await order_cache.cache_order(order_view(row))
    return Response(encoded, media_type=MediaType.JSON, headers={"X-Cache": "MISS"})


_CACHES: dict[int, OrderCache] = {}


@get("/orders/{order_id:uuid}", summary="Get one of your orders")
async def get_order_without_dependencies(
    order_id: uuid.UUID, request: Request[CurrentUser, Any, Any]
) -> Response[bytes]:
    """The real handler's logic with no dependency injection at all."""
    app = request.app
    cache = _CACHES.get(id(app))
    if cache is None:
        settings: Settings = app.state.settings
        cache = OrderCache(app.state.redis, settings.redis_prefix, settings.cache_ttl_seconds)
        _CACHES[id(app)] = cache
    cached = await cache.get_raw(order_id)
    if cached is not None:
        if owner_decoder.decode(cached).user_id != request.user.id:
            raise NotFoundException("order not found")
        return Response(cached, media_type=MediaType.JSON, headers={"X-Cache": "HIT"})
    async with AsyncSession(app_engine(app)) as session:
        row = await find_own_order(session, order_id, request.user.id)
    if row is None:
        raise NotFoundException("order not found")
    encoded = await cache.cache_order(order_view(row))
    return Response(encoded, media_type=MediaType.JSON, headers={"X-Cache": "MISS"})


def get_without_dependencies() -> Litestar:
    return _build(get_order=get_order_without_dependencies)


def all_three() -> Litestar:
    return _build(api_rate_limit=_one_round_trip_config, get_order=get_order_without_dependencies)


def get_without_session() -> Litestar:
    return _build(get_order=get_order_session_on_miss)


def both() -> Litestar:
    return _build(api_rate_limit=_one_round_trip_config, get_order=get_order_session_on_miss)


_NICE_POOL: ThreadPoolExecutor | None = None


def _lower_priority() -> None:
    """Linux schedules threads individually: nice this one only."""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


async def _niced_verify(password: str, password_hash: bytes) -> bool:
    global _NICE_POOL  # noqa: PLW0603 - one pool per process, made on first use
    if _NICE_POOL is None:
        _NICE_POOL = ThreadPoolExecutor(max_workers=2, initializer=_lower_priority)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_NICE_POOL, bcrypt.checkpw, password.encode(), password_hash)


def niced_bcrypt() -> Litestar:
    setattr(token_slice, "verify_password", _niced_verify)  # noqa: B010
    return composition.create_app()


def litestar_minimal() -> Litestar:
    """Litestar, its JWT bearer auth (claims trusted, no user lookup) and one Redis GET."""
    settings = load_settings()
    redis = create_redis(settings.redis_url)
    key = os.environ["BENCH_CEILING_KEY"]

    async def trust_claims(token: Token, _connection: Any) -> CurrentUser:
        return CurrentUser(int(token.sub))

    auth = OAuth2PasswordBearerAuth[CurrentUser, Token](
        token_secret=settings.jwt_secret,
        token_url=TOKEN_PATH,
        retrieve_user_handler=trust_claims,
        require_claims=["sub", "exp", "iat"],
    )

    @get("/")
    async def one_value() -> Response[bytes]:
        value = await redis.get(key)
        return Response(value or b"null", media_type=MediaType.JSON)

    return Litestar([one_value], on_app_init=[auth.on_app_init], debug=False)
