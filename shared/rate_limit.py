"""Litestar's rate limiting, counted in Redis so every API process shares one budget.

We keep Litestar's ``RateLimitConfig`` (limits, exclusions, the ``RateLimit-*`` header names,
``identifier_for_request``) and swap only how a request is counted, through the config's
documented ``middleware_class`` hook. The built-in reads the client's history from the
store and writes it back under a per-process lock: two round trips, and processes that
race lose counts (measured: 13 % of requests uncounted with two processes). Ours is one
atomic Redis script per request: a fixed window counter (``INCR``, expiry set on the first
hit) that returns the count and the time left.

The client is ``request.client``, which ``shared.client_address`` has already resolved
from the TCP peer (and ``X-Forwarded-For`` only when the peer is a trusted proxy).

Budgets, each a key of its own (the key names the middleware):
- every route: ``RATE_LIMIT`` requests per address;
- /register: ``TOKEN_RATE_LIMIT`` requests per address;
- /token: ``TOKEN_RATE_LIMIT`` attempts per account (the normalised ``username``), from any
  address, so rotating addresses does not escape it; and per address, ``TOKEN_RATE_LIMIT``
  distinct accounts (a request without a username counts as one more), so spraying one
  password over many accounts is stopped, while one account's failures do not lock the other
  users of a shared address out. An address that tries one account too many is refused for
  the rest of the window, whichever account it tries next.

When Redis is unreachable, the general limiter lets requests through (fails open) and logs
it: orders stay available during a Redis outage. /token and /register fail closed (503 with
``Retry-After``): password guessing and bcrypt floods are never unthrottled.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any, ClassVar

from litestar import Litestar, Request
from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import HTTPException, TooManyRequestsException
from litestar.middleware.rate_limit import (
    DURATION_VALUES,
    RateLimitConfig,
    RateLimitMiddleware,
)
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from shared.services import services_of
from shared.settings import Settings, parse_rate

logger = logging.getLogger(__name__)

SKIP_RATE_LIMIT = "skip_rate_limit"
LIMITER_DOWN_RETRY_AFTER_S = 5

# One budget per key. ARGV[1] the window in seconds, ARGV[2] the limit, then one ARGV per key:
# "" counts requests (INCR); anything else is a member of a set of distinct subjects, of which
# at most the limit are admitted; the next one adds the marker "!" and the whole key is over
# for the rest of the window. Returns {count, seconds left} per key, in one flat list.
_COUNT_IN_WINDOW = """
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local result = {}
for i, key in ipairs(KEYS) do
    local member = ARGV[i + 2]
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
return result
"""


class LimiterUnavailable(HTTPException):
    """The limiter cannot count (Redis unreachable) on a route that must not go unlimited."""

    status_code = HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self) -> None:
        super().__init__(
            detail="rate limiter temporarily unavailable, retry shortly",
            headers={"Retry-After": str(LIMITER_DOWN_RETRY_AFTER_S)},
        )


def _subject(value: str) -> str:
    """A fixed-length stand-in for an account name in a Redis key (no email stored there)."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class RedisRateLimitMiddleware(RateLimitMiddleware):
    """One atomic round trip per request; fails open when Redis is unreachable."""

    fail_closed: ClassVar[bool] = False

    def __init__(self, app: ASGIApp, config: RateLimitConfig) -> None:
        super().__init__(app, config)
        self._script: AsyncScript | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app: Litestar = scope["litestar_app"]
        request: Request[Any, Any, Any] = app.request_class(scope, receive)
        if not await self.should_check_request(request=request):
            await self.app(scope, receive, send)
            return
        window = DURATION_VALUES[self.unit]
        services = services_of(app)
        redis = services.redis
        prefix = f"{services.settings.redis_prefix}ratelimit:"
        budgets = await self.budgets(request)
        if self._script is None:
            self._script = redis.register_script(_COUNT_IN_WINDOW)
        try:
            flat = await self._script(
                keys=[prefix + key for key, _ in budgets],
                args=[window, self.max_requests, *(member for _, member in budgets)],
            )
        except (RedisError, OSError) as exc:
            if self.fail_closed:
                logger.warning("rate limiter cannot reach redis: refusing (%s)", type(exc).__name__)
                raise LimiterUnavailable from exc
            logger.warning("rate limiter cannot reach redis, letting request through: %s", exc)
            await self.app(scope, receive, send)
            return
        count, reset = max(zip(flat[::2], flat[1::2], strict=True))  # the tightest budget
        headers = self.limit_headers(int(count), int(reset))
        if count > self.max_requests:
            raise TooManyRequestsException(headers={**headers, "Retry-After": str(reset)})
        if not headers:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, self._with_headers(send, headers))
        except HTTPException as exc:  # a 401 from the auth middleware, say: answered outside
            exc.headers = {**headers, **(exc.headers or {})}
            raise

    async def budgets(self, request: Request[Any, Any, Any]) -> list[tuple[str, str]]:
        """(key, member) per budget this request counts against; member "" counts requests."""
        return [(self.cache_key_from_request(request), "")]

    def limit_headers(self, count: int, reset: int) -> dict[str, str]:
        if not self.config.set_rate_limit_headers:
            return {}
        window = DURATION_VALUES[self.unit]
        return {
            self.config.rate_limit_policy_header_key: f"{self.max_requests}; w={window}",
            self.config.rate_limit_limit_header_key: str(self.max_requests),
            self.config.rate_limit_remaining_header_key: str(max(self.max_requests - count, 0)),
            self.config.rate_limit_reset_header_key: str(reset),
        }

    @staticmethod
    def _with_headers(send: Send, headers: dict[str, str]) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                mutable = MutableScopeHeaders(message)
                for name, value in headers.items():
                    mutable[name] = value
            await send(message)

        return send_with_headers


class TokenRateLimitMiddleware(RedisRateLimitMiddleware):
    """/token: attempts per account, distinct accounts per address; fails closed."""

    fail_closed = True

    async def budgets(self, request: Request[Any, Any, Any]) -> list[tuple[str, str]]:
        form = await request.form()  # cached on the request: the handler does not read it again
        username = form.get("username")
        by_address = self.cache_key_from_request(request)
        if not isinstance(username, str) or not username.strip():
            return [(by_address, secrets.token_hex(8))]  # a refresh grant, say: one more subject
        account = _subject(username.strip().lower())
        return [(by_address, account), (f"{type(self).__name__}::account:{account}", "")]


class RegisterRateLimitMiddleware(RedisRateLimitMiddleware):
    """/register: ``TOKEN_RATE_LIMIT`` requests per address (each may cost a bcrypt hash)."""

    fail_closed = True


def api_rate_limit(settings: Settings) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=parse_rate(settings.rate_limit),
        exclude=[r"^/health", r"^/ready", r"^/schema", r"^/metrics"],
        exclude_opt_key=SKIP_RATE_LIMIT,
        middleware_class=RedisRateLimitMiddleware,
    )


def token_rate_limit(settings: Settings) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=parse_rate(settings.token_rate_limit),
        middleware_class=TokenRateLimitMiddleware,
    )


def register_rate_limit(settings: Settings) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=parse_rate(settings.token_rate_limit),
        middleware_class=RegisterRateLimitMiddleware,
    )
