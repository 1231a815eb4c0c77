"""The infrastructure a process builds once, handed to the code that needs it.

The composition root builds each piece once and puts them in one frozen ``Services``
(``app.create_app`` for the API) or ``WorkerServices`` (``workers/worker.py``'s start-up).
It holds infrastructure only: connections and the long-lived objects over them, never a
slice's function. Deeper code takes the few pieces it uses as arguments (the auth takes the
user directory, a grant its database, issuer and budget), so nothing below the handlers and
jobs needs the whole container.

- a handler asks for it by name: ``services: NamedDependency[Services]`` (one ``Provide``);
- middleware that Litestar cannot inject into calls ``services_of(app)``; so do handlers that
  keep off injection for speed (GET /orders/{id});
- a job reads ``ctx["services"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:  # types only: nothing these modules import reaches back here
    from arq.connections import ArqRedis
    from redis.asyncio import Redis

    from shared.accounts.sessions import SessionIssuer
    from shared.accounts.signing_keys import SigningKeys
    from shared.accounts.user_directory import UserDirectory
    from shared.db import Database
    from shared.http.budgets import PasswordGuesses
    from shared.messaging.bus import EventBus
    from shared.messaging.outbox import OutboxRelay
    from shared.orders.cache import OrderCache
    from shared.settings import Settings

SERVICES = "services"  # the key in app state, and the name handlers inject it by


class Services:
    """The API process's infrastructure, built once per app and never changed.

    A plain class, not a dataclass: Litestar hands an injected value through msgspec, which
    would try to validate a dataclass field by field (and cannot, for an engine).
    """

    __slots__ = (
        "bus",
        "db",
        "order_cache",
        "outbox_relay",
        "password_guesses",
        "redis",
        "sessions",
        "settings",
        "signing_keys",
        "users",
    )

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        redis: Redis,
        bus: EventBus,
        order_cache: OrderCache,
        users: UserDirectory,
        sessions: SessionIssuer,
        signing_keys: SigningKeys,
        outbox_relay: OutboxRelay,
        password_guesses: PasswordGuesses,
    ) -> None:
        self.settings = settings
        self.db = db  # the one way to PostgreSQL (shared/db.py)
        self.redis = redis
        self.bus = bus
        self.order_cache = order_cache
        self.users = users
        self.sessions = sessions  # access token plus refresh token, for every grant of /token
        self.signing_keys = signing_keys  # what signs and verifies access tokens; the JWKS
        self.outbox_relay = outbox_relay
        # Failed password checks per account (/token, DELETE /users/me)
        self.password_guesses = password_guesses


@dataclass(frozen=True, kw_only=True)
class WorkerServices:
    """The worker process's infrastructure: what its jobs need, built once at start-up."""

    settings: Settings
    db: Database
    redis: ArqRedis  # arq's own client: the job store, and the order cache's Redis too
    bus: EventBus
    order_cache: OrderCache
    outbox_relay: OutboxRelay  # publishes the jobs' events (``order_processed``)


class HasState(Protocol):
    """An app with its state (a Litestar app), named so without importing the framework."""

    @property
    def state(self) -> Any: ...


def services_of(app: HasState) -> Services:
    """The app's services, where Litestar cannot inject them (middleware, hot handlers)."""
    return cast("Services", app.state[SERVICES])
