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
from datetime import timedelta
from typing import Any

import asyncpg
import bcrypt
import msgspec
from litestar.connection import ASGIConnection
from litestar.security.jwt import OAuth2PasswordBearerAuth, Token
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.database import CONNECT_TIMEOUT_S, asyncpg_dsn
from shared.models import User
from shared.settings import Settings

logger = logging.getLogger(__name__)

TOKEN_PATH = "/token"
USER_DELETED_CHANNEL = "user_deleted"


class CurrentUser(msgspec.Struct, frozen=True):
    """Who is calling, as the token says; all a handler needs to scope its queries."""

    id: int


async def hash_password(password: str, rounds: int) -> bytes:
    """Hash in a worker thread: bcrypt releases the GIL, so the event loop keeps serving."""
    salt = bcrypt.gensalt(rounds)
    return await asyncio.to_thread(bcrypt.hashpw, password.encode(), salt)


async def verify_password(password: str, password_hash: bytes) -> bool:
    return await asyncio.to_thread(bcrypt.checkpw, password.encode(), password_hash)


class UserDirectory:
    """Answers "does user N still exist?" from memory, kept honest by LISTEN/NOTIFY."""

    def __init__(self, settings: Settings) -> None:
        self._dsn = asyncpg_dsn(settings.database_url)
        self._known: set[int] = set()
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="user-directory-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def exists(self, user_id: int, engine: AsyncEngine) -> bool:
        if user_id in self._known:
            return True
        async with engine.connect() as conn:
            found = await conn.scalar(select(User.id).where(User.id == user_id))
        # Only remember while deletions can reach us; otherwise ask every time.
        if found is not None and self._listening:
            self._known.add(user_id)
        return found is not None

    def _forget(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._known.discard(int(payload))

    async def _listen(self) -> None:
        """Hold one LISTEN connection; on any loss forget everything and reconnect."""
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
                await conn.add_listener(USER_DELETED_CHANNEL, self._forget)
                self._listening, delay = True, 0.5
                while not conn.is_closed():
                    await asyncio.sleep(1)
                    await conn.execute("SELECT 1")  # notices a dead connection promptly
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("user directory listener lost: %s", exc)
            finally:
                self._listening = False
                self._known.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def retrieve_user(
    token: Token, connection: ASGIConnection[Any, Any, Any, Any]
) -> CurrentUser | None:
    """Trust the signature; check only that the subject still exists (from memory)."""
    try:
        user_id = int(token.sub)
    except ValueError:
        return None
    state = connection.app.state
    if await state.users.exists(user_id, state.db_engine):
        return CurrentUser(user_id)
    return None


class TokenIssuer:
    """Signs access tokens with the app's auth config; what POST /token depends on."""

    def __init__(self, auth: OAuth2PasswordBearerAuth[CurrentUser, Token], lifetime: timedelta):
        self._auth = auth
        self.lifetime = lifetime

    def issue(self, user_id: int) -> str:
        return self._auth.create_token(identifier=str(user_id), token_expiration=self.lifetime)


def build_auth(settings: Settings) -> OAuth2PasswordBearerAuth[CurrentUser, Token]:
    return OAuth2PasswordBearerAuth[CurrentUser, Token](
        token_secret=settings.jwt_secret,
        token_url=TOKEN_PATH,
        retrieve_user_handler=retrieve_user,
        default_token_expiration=timedelta(minutes=settings.access_token_expire_minutes),
        require_claims=["sub", "exp", "iat"],
        exclude=[r"^/schema", r"^/health", r"^/ready"],
        description="Log in with your email as `username` (OAuth2 password flow).",
    )
