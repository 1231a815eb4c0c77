"""POST /token: trade email and password for a JWT (OAuth2 password flow, Swagger's Authorize).

Unknown email and wrong password answer the same 401 after the same bcrypt work, so neither
the body nor the timing tells an attacker which emails are registered. The route has its
own, stricter rate limit (``TOKEN_RATE_LIMIT``), per address and per account.

A hash made at another cost than ``BCRYPT_ROUNDS`` is remade at the current cost on the next
successful login: raising the cost later does not leave old accounts answering faster than
unknown emails (whose dummy check always runs at the current cost).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated

import bcrypt
from litestar import post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotAuthorizedException
from litestar.params import Body
from litestar.status_codes import HTTP_200_OK
from sqlalchemy.ext.asyncio import AsyncSession

from features.token.queries import find_credentials, store_password_hash
from features.token.schemas import TokenForm, TokenResponse
from shared.auth import TOKEN_PATH, bcrypt_cost, hash_password, verify_password
from shared.credentials import normalize_email
from shared.errors import error_responses
from shared.rate_limit import own_rate_limit
from shared.routes import public
from shared.services import Services


@functools.cache
def _dummy_hash(rounds: int) -> bytes:
    """Checked when the email is unknown, so both failures cost the same bcrypt work."""
    return bcrypt.hashpw(b"not-a-real-password", bcrypt.gensalt(rounds))


@post(
    TOKEN_PATH,
    **public(),
    status_code=HTTP_200_OK,
    tags=["users"],
    summary="Log in (OAuth2 password flow)",
    responses=error_responses(401, 413, 422, 429, 503),
    opt=own_rate_limit("token", per_account=True),
)
async def token(
    data: Annotated[TokenForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
    db_session: NamedDependency[AsyncSession],
    services: NamedDependency[Services],
) -> TokenResponse:
    settings, token_issuer = services.settings, services.token_issuer
    email = normalize_email(data.username)
    found = await find_credentials(db_session, email)
    if found is None:
        found_id, password_hash = None, await asyncio.to_thread(_dummy_hash, settings.bcrypt_rounds)
    else:
        found_id, password_hash = found
    if not await verify_password(data.password, password_hash) or found_id is None:
        raise NotAuthorizedException(detail="incorrect email or password")
    if bcrypt_cost(password_hash) != settings.bcrypt_rounds:
        new_hash = await hash_password(data.password, settings.bcrypt_rounds)
        await store_password_hash(db_session, found_id, password_hash, new_hash)
        await db_session.commit()
    return TokenResponse(
        access_token=token_issuer.issue(found_id),
        expires_in=int(token_issuer.lifetime.total_seconds()),
    )
