"""The composition root: builds the Litestar app from the feature slices and shared/.

Run with ``uvicorn app:create_app --factory``; tests call ``create_app(their_settings)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware

from features.create_order.handler import create_order
from features.delete_account.handler import delete_account
from features.docs.handler import docs_config
from features.get_order.handler import get_order
from features.health.handler import ReadinessProbe, health, ready
from features.jwks.handler import jwks
from features.list_user_orders.handler import list_user_orders
from features.me.handler import me
from features.patch_order.handler import patch_order
from features.refresh_session.handler import refresh_session
from features.register.handler import register
from features.revoke_token.handler import revoke_token
from features.token.handler import token
from shared.accounts.sessions import SessionIssuer
from shared.accounts.signing_keys import signing_keys
from shared.db import alchemy_config, autocommit
from shared.http.auth import (
    TokenIssuer,
    UserDirectory,
    access_token_policy,
    bcrypt_queue,
    build_auth,
    provide_current_user,
)
from shared.http.budgets import Budget, PasswordGuesses
from shared.http.client_address import ClientAddressMiddleware
from shared.http.errors import exception_handlers
from shared.http.exact_json import ExactJSONRequest
from shared.http.rate_limit import rate_limit_config
from shared.http.security_headers import SecurityHeaders
from shared.logs import RequestIdMiddleware, configure_logging
from shared.messaging.bus import EventBus
from shared.messaging.outbox import OutboxRelay
from shared.metrics import MetricsController, prometheus_config
from shared.orders.cache import OrderCache
from shared.redis import create_redis
from shared.services import SERVICES, Services
from shared.settings import Settings, load_settings, parse_rate, require_signing_keys


def create_app(settings: Settings | None = None) -> Litestar:
    # The one process that signs: the only one that requires (and resolves) the keys.
    settings = require_signing_keys(settings or load_settings())
    configure_logging(settings)
    prometheus = prometheus_config()
    database = alchemy_config(settings)
    engine = database.get_engine()
    redis = create_redis(settings.redis_url)
    bus = EventBus(settings)
    keys = signing_keys(
        settings.jwt_algorithm,
        settings.jwt_secret,
        settings.jwt_private_key,
        settings.jwt_previous_public_keys,
    )
    auth = build_auth(settings, keys)
    token_issuer = TokenIssuer(keys, access_token_policy(settings))
    services = Services(
        settings=settings,
        engine=engine,
        autocommit=autocommit(engine),
        redis=redis,
        bus=bus,
        order_cache=OrderCache(redis, settings.redis_prefix, settings.cache_ttl_seconds),
        users=UserDirectory(settings, engine),
        token_issuer=token_issuer,
        sessions=SessionIssuer(
            token_issuer,
            refresh_lifetime=timedelta(days=settings.refresh_token_expire_days),
            session_lifetime=timedelta(days=settings.session_max_days),
        ),
        # POST /token's grants besides the password grant (its own): one slice each.
        token_grants={"refresh_token": refresh_session},
        signing_keys=keys,
        outbox_relay=OutboxRelay(bus, engine),
        readiness=ReadinessProbe(engine, redis, bus).results,
        password_guesses=PasswordGuesses(
            redis, settings.redis_prefix, parse_rate(settings.token_rate_limit)
        ),
        session_refreshes=Budget(
            redis, settings.redis_prefix, "refresh_session", parse_rate(settings.token_rate_limit)
        ),
    )
    bcrypt_queue.size = settings.bcrypt_queue_size  # the bcrypt threads are per process too

    @asynccontextmanager
    async def connections(_: Litestar) -> AsyncIterator[None]:
        """Open every external connection once; close them on shutdown (SIGTERM included)."""
        await bus.start()
        await services.users.start()
        try:
            yield
        finally:
            await services.outbox_relay.stop()
            await services.users.stop()
            await bus.stop()
            await redis.aclose()
            # advanced-alchemy's own lifespan disposes the engine only for the process's
            # first config (it looks under the dependency key, not the unique state key).
            await engine.dispose()

    cors = CORSConfig(
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=[
            "Location",
            "X-Request-ID",
            "X-Cache",
            "Retry-After",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "RateLimit-Policy",
        ],
        max_age=600,
    )
    return Litestar(
        route_handlers=[
            health,
            ready,
            register,
            token,
            revoke_token,
            jwks,
            me,
            delete_account,
            create_order,
            get_order,
            patch_order,
            list_user_orders,
            MetricsController,
        ],
        lifespan=[connections],
        plugins=[SQLAlchemyPlugin(config=database)],
        state=State({SERVICES: services}),
        dependencies={
            SERVICES: Provide(lambda: services, use_cache=True, sync_to_thread=False),
            "current_user": Provide(provide_current_user, sync_to_thread=False),
        },
        on_app_init=[auth.on_app_init],
        middleware=[
            DefineMiddleware(ClientAddressMiddleware, proxies=settings.trusted_proxy_networks),
            RequestIdMiddleware,
            prometheus.middleware,
            rate_limit_config(settings).middleware,
        ],
        cors_config=cors if settings.cors_origins else None,
        exception_handlers=exception_handlers,
        before_send=[SecurityHeaders(settings.trusted_proxy_networks)],
        request_max_body_size=settings.max_body_bytes,
        request_class=ExactJSONRequest,
        openapi_config=docs_config(),
        logging_config=None,  # shared.logs configured logging already; keep it
        debug=False,
    )
