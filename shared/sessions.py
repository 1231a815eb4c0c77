"""Sessions: what POST /token answers with, and the refresh-token statements several slices share.

A session is a login's family of refresh tokens. The password grant starts one, the refresh
grant continues it (``features/refresh_session``), POST /token/revoke and a detected replay
end it. Statements here never commit: the slice that calls them commits once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from litestar.exceptions import NotAuthorizedException
from sqlalchemy import func, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.auth import TokenIssuer
from shared.credentials import EMAIL_MAX_LENGTH
from shared.models import RefreshToken
from shared.refresh_tokens import new_refresh_token, refresh_token_hash

if TYPE_CHECKING:  # a type only: services.py names this module's types the same way
    from shared.services import Services

GrantType = Literal["password", "refresh_token"]
# Wrong password, unknown email, and any refresh token that cannot be used: one answer.
LOGIN_REFUSED = "incorrect email or password"


def login_refused() -> NotAuthorizedException:
    return NotAuthorizedException(detail=LOGIN_REFUSED)


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


class SessionIssuer:
    """Issues an access token with a new refresh token of a session; built once per app."""

    def __init__(self, access: TokenIssuer, refresh_lifetime: timedelta) -> None:
        self.access = access
        self.refresh_lifetime = refresh_lifetime

    async def issue(
        self, db_session: AsyncSession, user_id: int, family_id: uuid.UUID | None = None
    ) -> TokenResponse:
        """Store a new refresh token (in ``family_id``'s session, else a new one); not committed."""
        refresh_token = new_refresh_token()
        await db_session.execute(
            insert(RefreshToken).values(
                token_hash=refresh_token_hash(refresh_token),
                family_id=family_id or uuid.uuid4(),
                user_id=user_id,
                expires_at=datetime.now(UTC) + self.refresh_lifetime,
            )
        )
        return TokenResponse(
            access_token=self.access.issue(user_id),
            expires_in=int(self.access.lifetime.total_seconds()),
            refresh_token=refresh_token,
            refresh_expires_in=int(self.refresh_lifetime.total_seconds()),
        )


async def revoke_family(db_session: AsyncSession, family_id: uuid.UUID) -> None:
    """Every token of the session stops working (not committed)."""
    await db_session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )


# A grant of POST /token other than the password grant: the form in, the session out.
Grant = Callable[[TokenForm, AsyncSession, "Services"], Awaitable[TokenResponse]]
Grants = Mapping[str, Grant]
