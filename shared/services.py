"""The one object through which handlers, middleware and jobs reach a process's services.

The composition root builds each service once and puts them in one frozen ``Services``
(``app.create_app`` for the API) or ``WorkerServices`` (``workers/worker.py``'s start-up).
Everything then reaches them one way:

- a handler asks for it by name: ``services: NamedDependency[Services]`` (one ``Provide``);
- middleware, guards and the auth callback, which Litestar cannot inject into, call
  ``services_of(app)``; so do handlers that keep off injection for speed (GET /orders/{id});
- a job reads ``ctx["services"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # types only: every module may import this one without a cycle
    from collections.abc import Awaitable, Callable

    from arq.connections import ArqRedis
    from litestar import Litestar
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from shared.accounts.sessions import Grants, SessionIssuer
    from shared.accounts.signing_keys import SigningKeys
    from shared.http.auth import TokenIssuer, UserDirectory
    from shared.http.budgets import Budget, PasswordGuesses
    from shared.messaging.bus import EventBus
    from shared.messaging.outbox import OutboxRelay
    from shared.orders.cache import OrderCache
    from shared.settings import Settings

SERVICES = "services"  # the key in app state, and the name handlers inject it by


class Services:
    """The API process's services, built once per app and never changed.

    A plain class, not a dataclass: Litestar hands an injected value through msgspec, which
    would try to validate a dataclass field by field (and cannot, for an engine).
    """

    __slots__ = (
        "autocommit",
        "bus",
        "engine",
        "order_cache",
        "outbox_relay",
        "password_guesses",
        "readiness",
        "redis",
        "session_refreshes",
        "sessions",
        "settings",
        "signing_keys",
        "token_grants",
        "token_issuer",
        "users",
    )

    def __init__(
        self,
        *,
        settings: Settings,
        engine: AsyncEngine,
        autocommit: AsyncEngine,
        redis: Redis,
        bus: EventBus,
        order_cache: OrderCache,
        users: UserDirectory,
        token_issuer: TokenIssuer,
        sessions: SessionIssuer,
        token_grants: Grants,
        signing_keys: SigningKeys,
        outbox_relay: OutboxRelay,
        readiness: Callable[[], Awaitable[dict[str, str]]],
        password_guesses: PasswordGuesses,
        session_refreshes: Budget,
    ) -> None:
        self.settings = settings
        self.engine = engine
        # The same pool without BEGIN/COMMIT: for a use case that is one statement.
        self.autocommit = autocommit
        self.redis = redis
        self.bus = bus
        self.order_cache = order_cache
        self.users = users
        self.token_issuer = token_issuer
        self.sessions = sessions  # access token plus refresh token, for every grant of /token
        self.token_grants = token_grants  # /token's grants other than the password grant
        self.signing_keys = signing_keys  # what signs and verifies access tokens; the JWKS
        self.outbox_relay = outbox_relay
        # GET /ready's answer (which of PostgreSQL, Redis, RabbitMQ answer), shared by callers
        self.readiness = readiness
        # Failed password checks per account (/token, DELETE /users/me); refreshes per session
        self.password_guesses = password_guesses
        self.session_refreshes = session_refreshes


@dataclass(frozen=True, kw_only=True)
class WorkerServices:
    """The worker process's services: what its jobs need, built once at start-up."""

    settings: Settings
    engine: AsyncEngine
    # The same pool without BEGIN/COMMIT: for a use case that is one statement (atomic alone).
    autocommit: AsyncEngine
    redis: ArqRedis  # arq's own client: the job store, and the order cache's Redis too
    bus: EventBus
    order_cache: OrderCache


def services_of(app: Litestar) -> Services:
    """The app's services, where Litestar cannot inject them (middleware, guards, auth)."""
    return cast("Services", app.state[SERVICES])
