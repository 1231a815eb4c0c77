"""The ceiling: the least an authenticated cached read can cost on this machine.

A bare ASGI app, no framework: it verifies the same JWT the API verifies (PyJWT, HS256, the
same secret, issuer, audience and required claims), GETs one Redis key and returns its bytes
as they are. It is served exactly like the API (same server, same number of processes), so
every scenario can be reported as a fraction of it. Serve it with
``uvicorn tools.bench.ceiling:create_app --factory --workers N``; ``BENCH_CEILING_KEY`` names
the key.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import jwt
from redis.asyncio import Redis

from shared.accounts.access_tokens import REQUIRED_CLAIMS
from shared.redis import create_redis
from shared.settings import Settings, load_api_settings

# Plain ASGI types: the ceiling owes nothing to a framework, its type hints included.
Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_UNAUTHORIZED = b'{"status_code":401,"detail":"not authenticated"}'


class Ceiling:
    def __init__(self, settings: Settings, redis: Redis, key: str) -> None:
        self._secret = settings.jwt_secret
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._redis = redis
        self._key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if not self._authenticated(scope):
            await _respond(send, 401, _UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])
            return
        value: bytes | None = await self._redis.get(self._key)
        if value is None:
            await _respond(send, 404, b'{"status_code":404,"detail":"not found"}')
            return
        await _respond(send, 200, value)

    def _authenticated(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    return False
                try:
                    claims: dict[str, Any] = jwt.decode(
                        token,
                        self._secret,
                        algorithms=["HS256"],
                        issuer=self._issuer,
                        audience=self._audience,
                        options={"require": list(REQUIRED_CLAIMS)},
                    )
                except jwt.PyJWTError:
                    return False
                return bool(claims.get("sub"))
        return False

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._redis.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON, (b"content-length", str(len(body)).encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def create_app() -> Ceiling:
    settings = load_api_settings()
    key = os.environ["BENCH_CEILING_KEY"]
    return Ceiling(settings, create_redis(settings.redis_url), key)
