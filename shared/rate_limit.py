"""Litestar's rate limiter, kept in Redis so every API process counts against one budget.

Two deliberate choices on top of the built-in:
- /token has its own, stricter budget under its own key (a subclass, so the keys differ).
- When Redis is unreachable the limiter lets requests through (fails open) and logs it:
  orders stay available during a cache outage; limiting resumes when Redis is back.
"""

from __future__ import annotations

import logging

from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware
from litestar.stores.base import Store
from redis.exceptions import RedisError

from shared.settings import Settings, parse_rate

logger = logging.getLogger(__name__)

RATE_LIMIT_STORE = "rate_limit"
SKIP_RATE_LIMIT = "skip_rate_limit"


class FailOpenRateLimitMiddleware(RateLimitMiddleware):
    async def retrieve_cached_history(self, key: str, store: Store) -> CacheObject:
        try:
            return await super().retrieve_cached_history(key, store)
        except (RedisError, OSError) as exc:
            logger.warning("rate limiter cannot reach redis, letting request through: %s", exc)
            return CacheObject(history=[], reset=0)

    async def set_cached_history(self, key: str, cache_object: CacheObject, store: Store) -> None:
        try:
            await super().set_cached_history(key, cache_object, store)
        except (RedisError, OSError) as exc:
            logger.warning("rate limiter cannot reach redis: %s", exc)


class TokenRateLimitMiddleware(FailOpenRateLimitMiddleware):
    """Same mechanism; the class name is part of the key, so /token counts separately."""


def api_rate_limit(settings: Settings) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=parse_rate(settings.rate_limit),
        exclude=[r"^/health", r"^/ready", r"^/schema", r"^/metrics"],
        exclude_opt_key=SKIP_RATE_LIMIT,
        middleware_class=FailOpenRateLimitMiddleware,
        store=RATE_LIMIT_STORE,
    )


def token_rate_limit(settings: Settings) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=parse_rate(settings.token_rate_limit),
        middleware_class=TokenRateLimitMiddleware,
        store=RATE_LIMIT_STORE,
    )
