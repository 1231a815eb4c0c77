"""Litestar's rate limiting, counted in Redis so every API process shares one budget.

We keep Litestar's ``RateLimitConfig`` (limits, exclusions, the ``RateLimit-*`` header names,
``identifier_for_request``) and swap only how a request is counted, through the config's
documented ``middleware_class`` hook. The built-in reads the client's history from the
store and writes it back under a per-process lock: two round trips, and processes that
race lose counts (measured: 13 % of requests uncounted with two processes). Ours is one
atomic Redis script per request: a fixed window counter (``INCR``, expiry set on the first
hit) that returns the count and the time left.

The client is ``request.client``, which ``shared.http.client_address`` has already resolved
from the TCP peer (and ``X-Forwarded-For`` only when the peer is a trusted proxy).

Every budget keyed by address counts ``budget_subject`` of it (``shared.http.client_address``):
an IPv6 client by its network (``RATE_LIMIT_IPV6_PREFIX``, a /64 by default), an IPv4-mapped
address as its IPv4 address.

Budgets, each under a key named where it is declared (``<prefix>ratelimit:<name>::…``):
- every route but the ops paths (``shared.http.routes``): ``RATE_LIMIT`` requests per address,
  under ``api``;
- a route that declares its own (``opt=own_rate_limit(name)``) counts against
  ``TOKEN_RATE_LIMIT`` under its name instead. /register (a bcrypt hash each), /token/revoke
  and DELETE /users/me (a password guess each): requests per address;
- /token (``distinct_accounts=True``), password grant: per address, ``TOKEN_RATE_LIMIT``
  distinct accounts (a request without a username counts as one more), so spraying one
  password over many accounts is stopped, while one account's failures do not lock the
  other users of a shared address out. An address that tries one account too many is
  refused for the rest of the window, whichever account it tries next. The refresh grant
  guesses no password: it counts under ``api`` like any request.

The budgets only a handler can key live in ``shared.http.budgets``: failed password checks per
account (/token and DELETE /users/me) and refreshes per session.

When Redis is unreachable, the general limiter lets requests through (fails open) and logs
it: orders stay available during a Redis outage. Routes with their own budget fail closed (503
with ``Retry-After``): password guessing and bcrypt floods are never unthrottled.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, Request
from litestar.exceptions import HTTPException, TooManyRequestsException
from litestar.middleware.rate_limit import (
    DURATION_VALUES,
    RateLimitConfig,
    RateLimitMiddleware,
)
from litestar.types import ASGIApp, Receive, Scope, Send
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from shared.http.budgets import LimiterUnavailable, account_subject
from shared.http.client_address import budget_subject
from shared.http.layers import answer_headers
from shared.http.routes import ops_path_patterns
from shared.services import services_of
from shared.settings import DurationUnit, Settings, parse_rate

logger = logging.getLogger(__name__)

# One budget per key. ARGV[1] the window in seconds, ARGV[2] the limit, ARGV[3] how many of the
# KEYS are budgets, then one ARGV per budget: "" counts requests (INCR); anything else is a
# member of a set of distinct subjects, of which at most the limit are admitted; the next one
# adds the marker "!" and the whole key is over for the rest of the window. Returns {count,
# seconds left} per budget, in one flat list, then the value of each KEY after the budgets
# (a route's prefetch: read in the same round trip), false (None) when missing.
_COUNT_IN_WINDOW = """
local window, limit, budgets = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local result = {}
for i = 1, budgets do
    local key = KEYS[i]
    local member = ARGV[i + 3]
    local count
    if member == '' then
        count = redis.call('INCR', key)
    else
        local over = redis.call('SISMEMBER', key, '!') == 1
        if not over and redis.call('SISMEMBER', key, member) == 0 then
            if redis.call('SCARD', key) >= limit then
                redis.call('SADD', key, '!')
                over = true
            else
                redis.call('SADD', key, member)
            end
        end
        count = over and limit + 1 or redis.call('SCARD', key)
    end
    local ttl = redis.call('TTL', key)
    if ttl < 0 then
        redis.call('EXPIRE', key, window)
        ttl = window
    end
    table.insert(result, count)
    table.insert(result, ttl)
end
for i = budgets + 1, #KEYS do
    table.insert(result, redis.call('GET', KEYS[i]))
end
return result
"""


API_LIMIT_KEY = "api"  # the API-wide budget's name in its Redis keys
ROUTE_LIMIT = "own_rate_limit"  # the opt key a route declares its own budget under
PREFETCH = "redis_prefetch"  # the opt key of a route's prefetch (``prefetch``)
_PREFETCHED = "redis_prefetched"  # in scope["state"]: (key, value) read for the handler

PrefetchKey = Callable[[Scope], str]


def prefetch(key_of: PrefetchKey) -> dict[str, PrefetchKey]:
    """A route's ``opt`` for a Redis value its handler reads on most requests: the limiter's
    round trip reads it too (one round trip, not two), and ``prefetched`` hands it over.
    Read before the caller is authenticated, so the handler alone decides what it may see."""
    return {PREFETCH: key_of}


def prefetched(scope: Scope, key: str) -> tuple[bool, bytes | None]:
    """(True, the value or None) when the limiter read ``key`` for this request; (False, None)
    when it did not (Redis unreachable, no limit on the route): the handler reads it then."""
    read: tuple[str, bytes | None] | None = scope["state"].get(_PREFETCHED)
    if read is None or read[0] != key:
        return False, None
    return True, read[1]


@dataclass(frozen=True)
class RouteLimit:
    """A route's own budget: ``TOKEN_RATE_LIMIT`` under the key ``name``, failing closed.

    Declared on the route (``opt=own_rate_limit("register")``) for routes that cost a bcrypt
    hash: they are never left unlimited, so while Redis cannot count they answer 503.
    """

    name: str
    # Count distinct accounts (the form's ``username``) per address instead of requests; a
    # form with ``grant_type=refresh_token`` counts under the API-wide budget.
    distinct_accounts: bool = False


def own_rate_limit(name: str, *, distinct_accounts: bool = False) -> dict[str, RouteLimit]:
    """A route's ``opt`` for its own budget (see ``RouteLimit``)."""
    return {ROUTE_LIMIT: RouteLimit(name, distinct_accounts)}


@dataclass
class RedisRateLimitConfig(RateLimitConfig):
    """Litestar's config, plus the budget of routes that declare their own."""

    route_rate_limit: tuple[DurationUnit, int] = ("minute", 10)


class RedisRateLimitMiddleware(RateLimitMiddleware):
    """One atomic round trip per request; the API-wide budget fails open when Redis is
    unreachable, a route's own fails closed."""

    config: RedisRateLimitConfig

    def __init__(self, app: ASGIApp, config: RedisRateLimitConfig) -> None:
        super().__init__(app, config)
        self._script: AsyncScript | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app: Litestar = scope["litestar_app"]
        request: Request[Any, Any, Any] = app.request_class(scope, receive)
        if not await self.should_check_request(request=request):
            await self.app(scope, receive, send)
            return
        route_limit: RouteLimit | None = scope["route_handler"].opt.get(ROUTE_LIMIT)
        (unit, limit), budgets = await self.budgets(request, route_limit)
        window = DURATION_VALUES[unit]
        services = services_of(app)
        redis = services.redis
        prefix = f"{services.settings.redis_prefix}ratelimit:"
        if self._script is None:
            self._script = redis.register_script(_COUNT_IN_WINDOW)
        key_of: PrefetchKey | None = scope["route_handler"].opt.get(PREFETCH)
        extra = [key_of(scope)] if key_of is not None else []
        try:
            flat = await self._script(
                keys=[*(prefix + key for key, _ in budgets), *extra],
                args=[window, limit, len(budgets), *(member for _, member in budgets)],
            )
        except (RedisError, OSError) as exc:
            if route_limit is not None:
                logger.warning("rate limiter cannot reach redis: refusing (%s)", type(exc).__name__)
                raise LimiterUnavailable from exc
            logger.warning("rate limiter cannot reach redis, letting request through: %s", exc)
            await self.app(scope, receive, send)
            return
        if extra:
            scope["state"][_PREFETCHED] = (extra[0], flat.pop())
        count, reset = max(zip(flat[::2], flat[1::2], strict=True))  # the tightest budget
        headers = self.limit_headers(limit, window, int(count), int(reset))
        if count > limit:
            raise TooManyRequestsException(headers={**headers, "Retry-After": str(reset)})
        if not headers:
            await self.app(scope, receive, send)
            return
        # Added to the answer by shared.http.layers' one wrapper of send (unless a budget the
        # handler spent answered for itself).
        answer_headers(scope).extend((k.lower().encode(), v.encode()) for k, v in headers.items())
        try:
            await self.app(scope, receive, send)
        except HTTPException as exc:  # a 401 from the auth middleware, say: answered outside
            exc.headers = {**headers, **(exc.headers or {})}
            raise

    async def budgets(
        self, request: Request[Any, Any, Any], route_limit: RouteLimit | None
    ) -> tuple[tuple[DurationUnit, int], list[tuple[str, str]]]:
        """The limit, and (key, member) per budget this request counts against; member ""
        counts requests, any other is one of the distinct subjects the key admits."""
        address = self.get_identifier_for_request(request)
        api_wide = (self.unit, self.max_requests), [(f"{API_LIMIT_KEY}::{address}", "")]
        if route_limit is None:
            return api_wide
        own = self.config.route_rate_limit
        by_address = f"{route_limit.name}::{address}"
        if not route_limit.distinct_accounts:
            return own, [(by_address, "")]
        form = await request.form()  # cached on the request: the handler does not read it again
        if form.get("grant_type") == "refresh_token":
            return api_wide  # no password guessed: its session's budget is the grant's to spend
        username = form.get("username")
        if not isinstance(username, str) or not username.strip():
            return own, [(by_address, secrets.token_hex(8))]
        return own, [(by_address, account_subject(username))]

    def limit_headers(self, limit: int, window: int, count: int, reset: int) -> dict[str, str]:
        if not self.config.set_rate_limit_headers:
            return {}
        return {
            self.config.rate_limit_policy_header_key: f"{limit}; w={window}",
            self.config.rate_limit_limit_header_key: str(limit),
            self.config.rate_limit_remaining_header_key: str(max(limit - count, 0)),
            self.config.rate_limit_reset_header_key: str(reset),
        }


def client_budget_subject(ipv6_prefix: int) -> Callable[[Request[Any, Any, Any]], str]:
    """Litestar's ``identifier_for_request``: the client as every address budget counts it."""

    def identify(request: Request[Any, Any, Any]) -> str:
        return budget_subject(request.client.host if request.client else "127.0.0.1", ipv6_prefix)

    return identify


def rate_limit_config(settings: Settings) -> RedisRateLimitConfig:
    """The one limiter: ``RATE_LIMIT`` everywhere but the ops paths, ``TOKEN_RATE_LIMIT`` on
    routes that declare their own budget."""
    return RedisRateLimitConfig(
        rate_limit=parse_rate(settings.rate_limit),
        route_rate_limit=parse_rate(settings.token_rate_limit),
        exclude=ops_path_patterns(),
        identifier_for_request=client_budget_subject(settings.rate_limit_ipv6_prefix),
        middleware_class=RedisRateLimitMiddleware,
    )
