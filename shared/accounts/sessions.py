"""Sessions: what POST /token answers with, and the session statements several slices share.

A session is a login (a ``sessions`` row) and its family of refresh tokens. The password
grant starts one, the refresh grant continues it (``features/refresh_session``), POST
/token/revoke and a detected replay end it, and it ends by itself ``SESSION_MAX_DAYS`` after
the login. Statements here run on the caller's connection, inside the transaction the slice
opened (``db.begin()``), which commits once.

Serialised per session: the refresh grant, a revoke and a replay's revoke each take the
session's row lock before they read or change its state, and revoked is the session's state,
not a token's. So a refresh racing a revoke either finishes first (its new token then belongs
to a session the revoke ends) or waits and finds the session revoked. Lock order, so nothing
can deadlock: the user's row first (FOR KEY SHARE: login, refresh; FOR UPDATE: account
deletion), then the session's, then its tokens'. Revoke takes no user lock, and the
deletion no session lock (its cascade just waits for a revoke in flight).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec
from sqlalchemy import Uuid, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.accounts.access_tokens import TokenIssuer
from shared.accounts.credentials import EMAIL_MAX_LENGTH
from shared.accounts.refresh_tokens import (
    new_refresh_token,
    refresh_token_expiry,
    refresh_token_hash,
)
from shared.models import DateTimeUTC, LoginSession, RefreshToken, User

GrantType = Literal["password", "refresh_token"]


class TokenForm(msgspec.Struct, frozen=True):
    """POST /token's form, both grants (RFC 6749 §4.3.2 and §6); ``username`` is the email.

    A field the grant needs is a 422 naming it when left out; sent but wrong (empty too), it
    is the same 401 as a wrong password.
    """

    grant_type: GrantType = "password"
    username: (
        Annotated[str, msgspec.Meta(max_length=EMAIL_MAX_LENGTH, description="your email")] | None
    ) = None
    password: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    refresh_token: (
        Annotated[str, msgspec.Meta(max_length=512, description="from an earlier /token")] | None
    ) = None
    scope: str = ""

    def __post_init__(self) -> None:
        refresh = self.grant_type == "refresh_token"
        for name in ("refresh_token",) if refresh else ("username", "password"):
            if getattr(self, name) is None:
                raise ValueError(f"`{name}` is required for grant_type={self.grant_type}")


class TokenResponse(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    token_type: Literal["bearer"] = "bearer"


# The README walk-through's login and its answer, as the OpenAPI document shows them
# (shared.http.openapi); the tokens are shortened stand-ins.
LOGIN_EXAMPLE = {
    "grant_type": "password",
    "username": "ada@example.com",
    "password": "correct horse",
}
TOKEN_RESPONSE_EXAMPLE = {
    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "expires_in": 1800,
    "refresh_token": "f3q9Yx2bVb8mK1rT0cW7nA5eJ4hL6pD2sG9uZ3oQ8iE",
    "refresh_expires_in": 1296000,
    "token_type": "bearer",
}


class SessionIssuer:
    """Starts sessions and issues their tokens (access and refresh); built once per app."""

    def __init__(
        self, access: TokenIssuer, refresh_lifetime: timedelta, session_lifetime: timedelta
    ) -> None:
        self.access = access
        self.refresh_lifetime = refresh_lifetime
        self.session_lifetime = session_lifetime

    async def start(self, conn: AsyncConnection, user_id: int) -> TokenResponse | None:
        """A new session and its first tokens (not committed); None if the user is gone.

        The user's row is read FOR KEY SHARE in the INSERT itself: an account deletion
        either waits for this login (and its cascade then takes the new session along) or
        has deleted the user first, and the login finds nobody (no foreign-key error).
        """
        now = datetime.now(UTC)
        end = now + self.session_lifetime
        family_id = uuid.uuid4()
        started = await conn.scalar(
            insert(LoginSession)
            .from_select(
                ["id", "user_id", "started_at", "expires_at"],
                select(
                    literal(family_id, Uuid),
                    User.id,
                    literal(now, DateTimeUTC),
                    literal(end, DateTimeUTC),
                )
                .where(User.id == user_id)
                .with_for_update(read=True, key_share=True),
            )
            .returning(LoginSession.id)
        )
        if started is None:
            return None
        return await self.issue(conn, user_id, family_id, end, now)

    async def issue(
        self,
        conn: AsyncConnection,
        user_id: int,
        family_id: uuid.UUID,
        session_end: datetime,
        now: datetime | None = None,
    ) -> TokenResponse:
        """Store a new refresh token in the session ``family_id`` (not committed): it lives
        REFRESH_TOKEN_EXPIRE_DAYS, or less where the session ends sooner."""
        now = now or datetime.now(UTC)
        expires_at = refresh_token_expiry(now, self.refresh_lifetime, session_end)
        refresh_token = new_refresh_token()
        await conn.execute(
            insert(RefreshToken).values(
                token_hash=refresh_token_hash(refresh_token),
                family_id=family_id,
                expires_at=expires_at,
            )
        )
        return TokenResponse(
            access_token=self.access.issue(user_id),
            expires_in=int(self.access.lifetime.total_seconds()),
            refresh_token=refresh_token,
            refresh_expires_in=max(0, int((expires_at - now).total_seconds())),
        )


async def revoke_session(conn: AsyncConnection, family_id: uuid.UUID) -> None:
    """End the session: no token of it works any more (not committed).

    The UPDATE takes the session's row lock, so it waits for a refresh in flight; that
    refresh's new token belongs to the session and is refused from the commit on.
    """
    await conn.execute(
        update(LoginSession)
        .where(LoginSession.id == family_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )


# A grant of POST /token other than the password grant: the form in, the session out. The
# composition root binds each grant to what it uses (functools.partial), so this is all the
# token route needs to know of it.
Grant = Callable[[TokenForm], Awaitable[TokenResponse]]
Grants = Mapping[str, Grant]
