"""Authentication: bcrypt off the event loop, and Litestar's OAuth2 bearer auth over signed claims.

A request is authenticated by its JWT alone. The only fact a claim cannot carry is whether
the user still exists, so each process remembers the ids it has seen in the database and
forgets one the moment PostgreSQL announces its deletion (``NOTIFY user_deleted``, sent by a
trigger): the hot path touches no table, and a deleted user's token stops working at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

import asyncpg
import bcrypt
import jwt
import msgspec
from litestar import Request
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.middleware.authentication import AuthenticationResult
from litestar.openapi.spec import OAuthFlow
from litestar.security.jwt import OAuth2PasswordBearerAuth, Token
from litestar.security.jwt.middleware import JWTCookieAuthenticationMiddleware
from litestar.security.jwt.token import JWTDecodeOptions
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.accounts.access_tokens import (
    JTI_BYTES,
    SIGNATURE_ONLY,
    TOKEN_TYPE,
    AccessTokenPolicy,
    InvalidAccessToken,
)
from shared.accounts.credentials import BCRYPT_MAX_BYTES
from shared.accounts.signing_keys import SigningKeys
from shared.accounts.verified_tokens import VerifiedTokens
from shared.db import COMMAND_TIMEOUT_S, CONNECT_TIMEOUT_S, asyncpg_dsn
from shared.http.routes import ops_path_patterns
from shared.models import User
from shared.services import Services, services_of
from shared.settings import Settings

logger = logging.getLogger(__name__)

TOKEN_PATH = "/token"
USER_DELETED_CHANNEL = "user_deleted"
MAX_USER_ID = 2**31 - 1  # users.id is a PostgreSQL integer


_T = TypeVar("_T")


class CurrentUser(msgspec.Struct, frozen=True):
    """Who is calling, as the token says; all a handler needs to scope its queries."""

    id: int


def _lower_priority() -> None:
    """Run bcrypt threads at a lower CPU priority (Linux: niceness is per thread).

    bcrypt releases the GIL, but a burst of logins still competes with the event loop for
    the cores; niced, it takes what the loop leaves, so other requests keep their latency.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BCRYPT_NICENESS)


BCRYPT_NICENESS = 10
# No more hashing threads than cores: a burst of logins queues instead of thrashing.
_bcrypt_pool = ThreadPoolExecutor(
    max_workers=os.cpu_count() or 2, thread_name_prefix="bcrypt", initializer=_lower_priority
)


BCRYPT_BUSY_RETRY_AFTER_S = 1


class BcryptBusy(HTTPException):
    """More password hashes waiting than the process allows: try again in a moment."""

    status_code = HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self) -> None:
        super().__init__(
            detail="too many logins in progress, retry shortly",
            headers={"Retry-After": str(BCRYPT_BUSY_RETRY_AFTER_S)},
        )


class BcryptQueue:
    """Bounds the hashes a process holds (running plus waiting): a burst past it is a prompt
    503, not a queue that grows without end while every caller waits longer."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pending = 0

    async def run(self, fn: Callable[[bytes, bytes], _T], secret: bytes, other: bytes) -> _T:
        if self.pending >= self.size:
            raise BcryptBusy
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(_bcrypt_pool, fn, secret, other)
        finally:
            self.pending -= 1


# One per process, like the threads it feeds; the app sizes it from BCRYPT_QUEUE_SIZE.
bcrypt_queue = BcryptQueue(size=64)


async def hash_password(password: str, rounds: int) -> bytes:
    """Hash off the event loop, in the low-priority bcrypt threads (503 when they are full)."""
    return await bcrypt_queue.run(bcrypt.hashpw, password.encode(), bcrypt.gensalt(rounds))


async def verify_password(password: str, password_hash: bytes) -> bool:
    secret = password.encode()
    if len(secret) > BCRYPT_MAX_BYTES:
        return False  # no stored password is longer (registration refuses it); bcrypt would raise
    return await bcrypt_queue.run(bcrypt.checkpw, secret, password_hash)


def bcrypt_cost(password_hash: bytes) -> int | None:
    """The cost a hash was made with (``$2b$12$…`` → 12), or None if it is not bcrypt's form."""
    parts = password_hash.split(b"$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() else None


class UserDirectory:
    """Answers "does user N still exist?" from memory, kept honest by LISTEN/NOTIFY.

    When the LISTEN link drops (PostgreSQL down or unreachable), the ids already known keep
    being vouched for, for at most ``USER_DIRECTORY_MAX_STALENESS_S``: their cached reads go on
    through the outage. The price: a user deleted meanwhile (through another process that
    still reaches PostgreSQL) keeps that long. Past the bound, and for ids not known before,
    the database is asked, so the request fails with 503 until it answers. Once the link is
    back, the ids remembered across the gap are checked against the table before anything else
    is trusted to be current: deletions missed during it are applied.
    """

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self._dsn = asyncpg_dsn(settings.database_url)
        self._engine = engine
        self._max_staleness_s = settings.user_directory_max_staleness_s
        self._known: set[int] = set()
        self._listening = False
        self._lost_at: float | None = None  # monotonic time the link was lost, while it is
        # Bumped by every deletion notice and every (re)connect of the listener: a lookup that
        # saw the user before a bump may be stale, so its answer is not remembered.
        self._epoch = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """True while deletions reach this process (only then are ids remembered)."""
        return self._listening

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="user-directory-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def vouches_for(self, user_id: int) -> bool:
        """Known, and either deletions reach us or the link was lost less than the bound ago."""
        if user_id not in self._known:
            return False
        if self._listening or self._lost_at is None:
            return True
        if time.monotonic() - self._lost_at <= self._max_staleness_s:
            return True
        self._known.clear()  # too old to trust: from now on every id is looked up
        return False

    async def exists(self, user_id: int) -> bool:
        if self.vouches_for(user_id):
            return True
        epoch, listening = self._epoch, self._listening
        async with self._engine.connect() as conn:
            found = await conn.scalar(select(User.id).where(User.id == user_id))
        # Only remember while deletions can reach us, and only if no deletion notice (or
        # reconnect) arrived during the lookup: it may have been about this very user.
        if found is not None and listening and epoch == self._epoch:
            self._known.add(user_id)
        return found is not None

    def forget(self, user_id: int) -> None:
        """The user was deleted by this process: refuse their tokens here before the notice."""
        self._epoch += 1
        self._known.discard(user_id)

    def _forget(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._epoch += 1
        with contextlib.suppress(ValueError):
            self._known.discard(int(payload))

    async def _recheck_known(self, conn: asyncpg.Connection) -> None:
        """After a gap: drop the remembered ids whose users were deleted while we were deaf.

        Runs once LISTEN is on again, so a deletion after this query arrives as a notice; one
        that lands during it is applied by ``_forget`` and not undone here (ids only leave).
        """
        remembered = list(self._known)
        if not remembered:
            return
        rows = await conn.fetch(
            "SELECT id FROM users WHERE id = ANY($1::int[])", remembered, timeout=COMMAND_TIMEOUT_S
        )
        gone = set(remembered) - {row["id"] for row in rows}
        self._known -= gone
        if gone:
            logger.info("user directory: %d users deleted during the gap forgotten", len(gone))

    async def _listen(self) -> None:
        """Hold one LISTEN connection; on a loss keep vouching (bounded) and reconnect."""
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
                await conn.add_listener(USER_DELETED_CHANNEL, self._forget)
                await self._recheck_known(conn)
                self._epoch += 1
                self._listening, self._lost_at, delay = True, None, 0.5
                while not conn.is_closed():
                    await asyncio.sleep(1)
                    await conn.execute("SELECT 1", timeout=2)  # notices a dead or stalled link
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: mark the gap and retry
                logger.warning("user directory listener lost: %s", exc)
            finally:
                if self._listening or self._lost_at is None:
                    self._lost_at = time.monotonic()
                self._listening = False
                self._epoch += 1
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def retrieve_user(
    token: Token, connection: ASGIConnection[Any, Any, Any, Any]
) -> CurrentUser | None:
    """Trust the signature; check only that the subject still exists (from memory)."""
    if not token.sub.isascii() or not token.sub.isdigit():
        return None  # not an id we issued; int() would also take " 7", "+7" and "7_0"
    user_id = int(token.sub)
    if not 0 < user_id <= MAX_USER_ID:
        return None  # out of the column's range: the database would refuse the query
    if await services_of(connection.app).users.exists(user_id):
        return CurrentUser(user_id)
    return None


class TokenIssuer:
    """Signs access tokens by the RFC 9068 profile; what POST /token depends on."""

    def __init__(self, keys: SigningKeys, policy: AccessTokenPolicy) -> None:
        self._keys = keys
        self._policy = policy
        kid = {"kid": keys.signing_kid} if keys.signing_kid else {}
        self._header = {"typ": TOKEN_TYPE, **kid}
        self.lifetime = timedelta(seconds=policy.lifetime_s)

    def issue(self, user_id: int) -> str:
        jti = secrets.token_urlsafe(JTI_BYTES)
        claims = self._policy.claims(str(user_id), int(time.time()), jti)
        return jwt.encode(
            claims, key=self._keys.signing_key, algorithm=self._keys.algorithm, headers=self._header
        )


def provide_current_user(
    request: Request[CurrentUser, Token, Any],
    services: NamedDependency[Services],  # only so Litestar resolves this after it: see below
) -> CurrentUser:
    """The authenticated caller, for handlers to depend on by name.

    It names ``services`` so that a handler taking both gets them one after the other:
    Litestar resolves independent dependencies concurrently, in an anyio task group opened
    per request, which cost 5 % of a POST /orders' CPU for two values already at hand.
    """
    return request.user


class BearerHeaderMiddleware(JWTCookieAuthenticationMiddleware):
    """The token from ``Authorization: Bearer`` only.

    Litestar's OAuth2 middleware also reads a ``token`` cookie (which a browser attaches to a
    cross-site request by itself) and takes whatever follows the first space of the header,
    whatever the scheme (``Basic <jwt>`` passed). Neither is accepted here.
    """

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        scheme, _, encoded_token = connection.headers.get(self.auth_header, "").partition(" ")
        if scheme.lower() != "bearer" or not encoded_token.strip():
            raise NotAuthorizedException("a bearer token is required in the Authorization header")
        return await self.authenticate_token(
            encoded_token=encoded_token.strip(), connection=connection
        )


class BearerAuth(OAuth2PasswordBearerAuth[CurrentUser, Token]):
    """Litestar's OAuth2 bearer auth, header only, placed after the app's other middleware.

    Litestar puts auth first, so a request with no or a bad token never reached the rate
    limiter: it was neither counted nor refused with 429. Run second, the limiter sees every
    request, whatever its token.
    """

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config = super().on_app_init(app_config)
        app_config.middleware.append(app_config.middleware.pop(0))  # super() inserted it at 0
        return app_config

    @property
    def oauth_flow(self) -> OAuthFlow:
        """The password flow, whose token URL also takes the refresh grant (OpenAPI's
        ``refreshUrl``)."""
        return OAuthFlow(token_url=self.token_url, refresh_url=self.token_url, scopes={})


class SignedToken(Token):
    """Litestar's token, verified with the deployment's keys and its access-token policy.

    Litestar's auth passes one secret; with a key set the verifying key depends on the token's
    ``kid``, so this picks it, lets PyJWT check the signature with the configured algorithm
    only, then the policy checks the header and claims (``shared.accounts.access_tokens``).
    A ``kid``
    that names no key (any ``kid`` under HS256) is refused. Only a token that passed all of
    it is remembered. Tokens are signed by ``TokenIssuer``, never through this class.
    """

    keys: ClassVar[SigningKeys]
    policy: ClassVar[AccessTokenPolicy]
    verified: ClassVar[VerifiedTokens]  # this app's tokens verified so far, until they expire

    def __post_init__(self) -> None:
        """Litestar's checks (``iat`` not one second ahead, ``exp`` ahead) are not repeated:
        the policy has checked both, with the clock skew Litestar's check does not allow."""

    @classmethod
    def for_keys(cls, keys: SigningKeys, policy: AccessTokenPolicy) -> type[SignedToken]:
        """A token class bound to one app's keys (tests build several apps in one process)."""
        attributes = {"keys": keys, "policy": policy, "verified": VerifiedTokens()}
        return type("SignedToken", (cls,), attributes)

    @classmethod
    def decode_payload(
        cls,
        encoded_token: str,
        secret: str,
        algorithms: list[str],
        issuer: str | Sequence[str] | None = None,
        audience: str | Sequence[str] | None = None,
        options: JWTDecodeOptions | None = None,
    ) -> Any:
        # The auth middleware is the only caller; the policy, not its options, judges claims.
        now = time.time()
        claims = cls.verified.get(encoded_token, now)
        if claims is not None:
            return claims
        key = cls.keys.verifying_key(jwt.get_unverified_header(encoded_token).get("kid"))
        if key is None:
            raise jwt.InvalidTokenError("the token's kid names no key")
        try:
            decoded = jwt.decode_complete(
                encoded_token,
                key=key,
                algorithms=algorithms,
                options=SIGNATURE_ONLY,
            )
            claims = decoded["payload"]
            cls.policy.check(decoded["header"], claims, now)
        except (jwt.PyJWTError, InvalidAccessToken) as exc:  # Litestar makes these a 401
            raise jwt.InvalidTokenError(str(exc)) from exc
        cls.verified.put(encoded_token, claims)
        return claims

    def encode(self, secret: str, algorithm: str) -> str:
        raise NotImplementedError("access tokens are signed by TokenIssuer")


def access_token_policy(settings: Settings) -> AccessTokenPolicy:
    return AccessTokenPolicy(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lifetime_s=settings.access_token_expire_minutes * 60,
    )


def build_auth(
    settings: Settings, keys: SigningKeys
) -> OAuth2PasswordBearerAuth[CurrentUser, Token]:
    return BearerAuth(
        token_secret=settings.jwt_secret,  # unused: SignedToken verifies with keys
        algorithm=keys.algorithm,
        token_cls=SignedToken.for_keys(keys, access_token_policy(settings)),
        token_url=TOKEN_PATH,
        retrieve_user_handler=retrieve_user,
        default_token_expiration=timedelta(minutes=settings.access_token_expire_minutes),
        exclude=ops_path_patterns(),
        description=(
            "Log in with your email as `username` (OAuth2 password flow). The answer's"
            " `refresh_token` gets new tokens from the same URL (`grant_type=refresh_token`)."
        ),
        authentication_middleware_class=BearerHeaderMiddleware,
    )
