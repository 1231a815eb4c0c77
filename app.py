"""The composition root: settings → infrastructure → Services → the Litestar app from the slices.

Run with ``uvicorn app:create_app --factory``; tests call ``create_app(their_settings)``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware

from features.create_order.handler import create_order
from features.delete_account.handler import delete_account
from features.docs.handler import docs_config
from features.get_order.handler import get_order
from features.health.handler import READINESS, ReadinessProbe, health, ready
from features.jwks.handler import jwks
from features.list_user_orders.handler import list_user_orders
from features.me.handler import me
from features.order_events.handler import ORDER_STREAMS, stream_order_events
from features.order_events.shutdown import chain_shutdown_signals
from features.order_events.stream import OrderStreams
from features.patch_order.handler import patch_order
from features.refresh_session.handler import refresh_session
from features.register.handler import register
from features.revoke_token.handler import revoke_token
from features.token.handler import TOKEN_GRANTS, token
from shared import tracing
from shared.accounts.access_tokens import TokenIssuer, access_token_policy
from shared.accounts.passwords import bcrypt_queue
from shared.accounts.sessions import Grants, SessionIssuer
from shared.accounts.signing_keys import signing_keys
from shared.accounts.user_directory import UserDirectory
from shared.db import Database, asyncpg_dsn, create_engine
from shared.http.auth import build_auth, provide_current_user, user_retriever
from shared.http.budgets import Budget, PasswordGuesses
from shared.http.errors import exception_handlers
from shared.http.exact_json import ExactJSONRequest
from shared.http.layers import RequestLayers
from shared.http.metrics import MetricsController, flush_every
from shared.http.rate_limit import rate_limit_config
from shared.http.security_headers import SecurityHeaders
from shared.http.tracing import server_tracing
from shared.logs import configure_logging
from shared.messaging.bus import EventBus
from shared.messaging.outbox import OutboxRelay
from shared.orders.cache import OrderCache
from shared.orders.event_log import EventLog
from shared.redis import create_redis
from shared.services import SERVICES, Services
from shared.settings import Settings, load_settings, parse_rate, require_signing_keys


@functools.cache
def freeze_start_up_heap() -> None:
    """What start-up built (modules, routes, schemas, pools) lives as long as the process: out
    of the collector's sight, the oldest generation's collections stop walking it during
    requests (a pause in the tail). Once per process: tests start many apps, and freezing
    each one's leftovers would keep their cycles for good.

    No ``gc.collect()`` first: one here made the outbox relay leave rows unsent after a
    RabbitMQ outage (tests/hardening/faults/test_rabbitmq.py), i.e. something the pipeline
    needs is reachable only through a cycle; BENCHMARKS.md, issue 22, says more.
    """
    gc.freeze()


def create_app(settings: Settings | None = None) -> Litestar:
    # The one process that signs: the only one that requires (and resolves) the keys.
    settings = require_signing_keys(settings or load_settings())
    configure_logging(settings)
    tracer_provider = tracing.start_tracing(settings, tracing.API)  # None: tracing is off
    db = Database(create_engine(settings))
    tracing.trace_engine(db.engine)
    redis = create_redis(settings.redis_url)
    bus = EventBus(settings)
    keys = signing_keys(
        settings.jwt_algorithm,
        settings.jwt_secret,
        settings.jwt_private_key,
        settings.jwt_previous_public_keys,
    )
    users = UserDirectory(
        db, asyncpg_dsn(settings.database_url), settings.user_directory_max_staleness_s
    )
    auth = build_auth(settings, keys, user_retriever(users))
    sessions = SessionIssuer(
        TokenIssuer(keys, access_token_policy(settings)),
        refresh_lifetime=timedelta(days=settings.refresh_token_expire_days),
        session_lifetime=timedelta(days=settings.session_max_days),
    )
    session_refreshes = Budget(
        redis, settings.redis_prefix, "refresh_session", parse_rate(settings.token_rate_limit)
    )
    services = Services(
        settings=settings,
        db=db,
        redis=redis,
        bus=bus,
        order_cache=OrderCache(redis, settings.redis_prefix, settings.cache_ttl_seconds),
        users=users,
        sessions=sessions,
        signing_keys=keys,
        outbox_relay=OutboxRelay(bus, db),
        password_guesses=PasswordGuesses(
            redis, settings.redis_prefix, parse_rate(settings.token_rate_limit)
        ),
    )
    # POST /token's grants besides the password grant (its own): one slice each, bound here
    # to what it uses.
    token_grants: Grants = {
        "refresh_token": functools.partial(
            refresh_session, db=db, sessions=sessions, refreshes=session_refreshes
        )
    }
    readiness = ReadinessProbe(db, redis, bus)
    order_streams = OrderStreams(
        EventLog(
            redis,
            settings.redis_prefix,
            log_seconds=settings.sse_log_seconds,
            log_length=settings.sse_log_length,
        ),
        settings,
    )
    bcrypt_queue.size = settings.bcrypt_queue_size  # the bcrypt threads are per process too

    @asynccontextmanager
    async def connections(_: Litestar) -> AsyncIterator[None]:
        """Open every external connection once; close them on shutdown (SIGTERM included)."""
        await bus.start()
        await services.users.start()
        await order_streams.start()
        restore_signals = chain_shutdown_signals(order_streams.close)
        freeze_start_up_heap()
        metrics = asyncio.create_task(flush_every(), name="metrics-flush")
        try:
            yield
        finally:
            restore_signals()
            metrics.cancel()  # flushes a last time
            await asyncio.gather(metrics, return_exceptions=True)
            await order_streams.stop()
            await services.outbox_relay.stop()
            await services.users.stop()
            await bus.stop()
            await redis.aclose()
            await db.dispose()

    tracing_plugins, tracing_hooks = server_tracing(tracer_provider)
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
            stream_order_events,
            MetricsController,
        ],
        lifespan=[connections],
        state=State({SERVICES: services}),
        dependencies={
            SERVICES: Provide(lambda: services, use_cache=True, sync_to_thread=False),
            "current_user": Provide(provide_current_user, sync_to_thread=False),
            TOKEN_GRANTS: Provide(lambda: token_grants, use_cache=True, sync_to_thread=False),
            READINESS: Provide(lambda: readiness, use_cache=True, sync_to_thread=False),
            ORDER_STREAMS: Provide(lambda: order_streams, use_cache=True, sync_to_thread=False),
        },
        on_app_init=[auth.on_app_init],
        middleware=[
            DefineMiddleware(RequestLayers, proxies=settings.trusted_proxy_networks),
            rate_limit_config(settings).middleware,
        ],
        cors_config=cors if settings.cors_origins else None,
        exception_handlers=exception_handlers,
        before_send=[SecurityHeaders(settings.trusted_proxy_networks), *tracing_hooks],
        plugins=tracing_plugins,
        request_max_body_size=settings.max_body_bytes,
        request_class=ExactJSONRequest,
        openapi_config=docs_config(),
        logging_config=None,  # shared.logs configured logging already; keep it
        debug=False,
    )
