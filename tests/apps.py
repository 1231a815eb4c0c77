"""Extra apps for one test: settings changed or pointed at a dead port, a probe route."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Litestar, Request, get
from litestar.security.jwt import Token
from litestar.testing import AsyncTestClient
from litestar.types import Receive, Scope, Send
from sqlalchemy.engine import make_url

from shared.http.auth import CurrentUser
from shared.settings import Settings

UNUSED_PORT = 1

StartApp = Callable[[Litestar], Awaitable[AsyncTestClient[Litestar]]]


def with_settings(settings: Settings, **changes: object) -> Settings:
    return msgspec.structs.replace(settings, **changes)


def token_limited(settings: Settings, per_minute: int) -> Settings:
    """A small ``TOKEN_RATE_LIMIT`` under a Redis prefix of its own, so no other test shares it."""
    return with_settings(
        settings,
        token_rate_limit=f"{per_minute}/minute",
        redis_prefix=f"{settings.redis_prefix}tl-{secrets.token_hex(4)}:",
    )


PROXY = "192.0.2.1"  # the reverse proxy of ``behind_proxy``: name it in TRUSTED_PROXIES


def behind_proxy(app: Litestar, proxy: str = PROXY) -> Litestar:
    """``app`` reached through a reverse proxy at ``proxy``: the connection's peer is the proxy.

    The test client's own peer is ``testclient``, not an address, so no TRUSTED_PROXIES
    entry could name it; this sets the peer a proxy's connection would have, before any of
    the app's middleware runs. Each request then says its client in ``X-Forwarded-For``.
    """
    handler = app.asgi_handler

    async def from_proxy(scope: Scope, receive: Receive, send: Send) -> None:
        scope["client"] = (proxy, 50000)
        await handler(scope, receive, send)

    app.asgi_handler = from_proxy
    return app


def forwarded_for(address: str) -> dict[str, str]:
    """The header ``behind_proxy``'s proxy adds for a client at ``address``."""
    return {"X-Forwarded-For": address}


def unreachable(settings: Settings, dependency: str) -> Settings:
    if dependency == "postgresql":
        url = make_url(settings.database_url).set(port=UNUSED_PORT)
        return with_settings(settings, database_url=url.render_as_string(hide_password=False))
    if dependency == "redis":
        return with_settings(settings, redis_url=f"redis://127.0.0.1:{UNUSED_PORT}/0")
    return with_settings(settings, rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{UNUSED_PORT}/")


def metrics_headers(settings: Settings) -> dict[str, str]:
    """What Prometheus sends to read the API's /metrics."""
    return {"Authorization": f"Bearer {settings.metrics_token}"}


PROBE = "/probe/whoami"


@get(PROBE, sync_to_thread=False)
def whoami(request: Request[CurrentUser, Token, Any]) -> dict[str, int]:
    """A protected route for tests of auth itself (``app.register(whoami)``): the caller's id."""
    return {"id": request.user.id}
