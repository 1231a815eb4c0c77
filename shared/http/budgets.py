"""The budgets a handler spends once it knows whose they are, counted in Redis, failing closed.

The limiter middleware (``shared.http.rate_limit``) counts what a request alone tells: its address
and the form's username. Two budgets need what only a handler learns:

- failed password checks per account (``PasswordGuesses``): /token knows the account from
  the form, DELETE /users/me only after reading the user's row. Both spend the same key,
  so a stolen access token buys no guesses beyond what /token allows;
- refreshes per session (``Budget`` named ``refresh_session``): the session is known only
  once the refresh token has been looked up.

Each is ``TOKEN_RATE_LIMIT`` units per subject and window. A unit is taken by one atomic
script before the work it pays for, so N concurrent guesses from N processes cannot all pass
a check made before any of them counted, and a password check that proves right gives its
unit back: only failures stay counted. A budget is a set of unit ids rather than a counter
so that giving back is exact: a unit taken in a window that has ended since is simply not
there, where a decrement would free one of the next window's. While Redis cannot count,
these answer 503 with ``Retry-After``: password guessing is never unthrottled.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable

from litestar.exceptions import HTTPException, TooManyRequestsException
from litestar.middleware.rate_limit import DURATION_VALUES
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.accounts.credentials import normalize_email
from shared.settings import DurationUnit

logger = logging.getLogger(__name__)

LIMITER_DOWN_RETRY_AFTER_S = 5

# KEYS[1] the budget (a set of the units taken this window); ARGV: window in seconds, limit,
# the new unit's id. Returns {1 if taken else 0, units taken, seconds left in the window}.
_TAKE = """
local taken = redis.call('SCARD', KEYS[1])
if taken >= tonumber(ARGV[2]) then
    return {0, taken, redis.call('TTL', KEYS[1])}
end
redis.call('SADD', KEYS[1], ARGV[3])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
return {1, taken + 1, ttl}
"""


class LimiterUnavailable(HTTPException):
    """The limiter cannot count (Redis unreachable) on a route that must not go unlimited."""

    status_code = HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self) -> None:
        super().__init__(
            detail="rate limiter temporarily unavailable, retry shortly",
            headers={"Retry-After": str(LIMITER_DOWN_RETRY_AFTER_S)},
        )


def subject_of(value: str) -> str:
    """A fixed-length stand-in for an account name in a Redis key (no email stored there)."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def account_subject(email: str) -> str:
    """The account an email names, as every budget keyed by account spells it."""
    return subject_of(normalize_email(email))


class Budget:
    """``limit`` units per subject and window under ``<prefix>ratelimit:<name>::<subject>``."""

    def __init__(
        self, redis: Redis, prefix: str, name: str, rate: tuple[DurationUnit, int]
    ) -> None:
        self.redis = redis
        self.key_prefix = f"{prefix}ratelimit:{name}::"
        self.window = DURATION_VALUES[rate[0]]
        self.limit = rate[1]
        self._take = redis.register_script(_TAKE)

    async def take(self, subject: str) -> str:
        """Take a unit (its id, for ``give_back``); 429 when none is left, 503 without Redis."""
        unit = secrets.token_hex(8)
        try:
            taken, _, ttl = await self._take(
                keys=[self.key_prefix + subject], args=[self.window, self.limit, unit]
            )
        except (RedisError, OSError) as exc:
            logger.warning("budget cannot reach redis: refusing (%s)", type(exc).__name__)
            raise LimiterUnavailable from exc
        if not taken:
            retry_after = str(max(int(ttl), 1))
            raise TooManyRequestsException(
                headers={
                    "Retry-After": retry_after,
                    "RateLimit-Policy": f"{self.limit}; w={self.window}",
                    "RateLimit-Limit": str(self.limit),
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": retry_after,
                }
            )
        return unit

    async def give_back(self, subject: str, unit: str) -> None:
        """Return a unit taken this window; one from a window that ended is gone already."""
        try:
            await self.redis.srem(self.key_prefix + subject, unit)  # type: ignore[misc]
        except (RedisError, OSError) as exc:  # the unit stays spent: the safe side
            logger.warning("budget cannot reach redis to give a unit back (%s)", type(exc).__name__)


class PasswordGuesses(Budget):
    """Failed password checks per account, from any address, for every route that checks one.

    /token and DELETE /users/me both call ``check``, so both spend one key per account (the
    normalised email) and neither can be used to go on guessing once the other has spent it.
    Correct passwords cost nothing, so a user logging in from many devices is never locked
    out, and only failing the password can spend the budget. Once failures have spent it,
    the correct password is refused too until the window ends: a guess must learn nothing then.
    """

    def __init__(self, redis: Redis, prefix: str, rate: tuple[DurationUnit, int]) -> None:
        super().__init__(redis, prefix, "password", rate)

    async def check(self, email: str, verify: Callable[[], Awaitable[bool]]) -> bool:
        """``verify()`` (the bcrypt check) paid for by one unit of ``email``'s account, given
        back when it proves right or cannot run (a full bcrypt queue: no guess was made)."""
        account = account_subject(email)
        unit = await self.take(account)
        try:
            right = await verify()
        except Exception:
            await self.give_back(account, unit)
            raise
        if right:
            await self.give_back(account, unit)
        return right
