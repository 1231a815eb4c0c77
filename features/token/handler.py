"""POST /token: trade email and password for a session (OAuth2 password flow, Swagger's Authorize).

The answer is an access token (JWT) and a refresh token. The same route serves the refresh
grant (``grant_type=refresh_token``): the composition root gives this handler the other
grants (``features/refresh_session``), and an unsupported ``grant_type`` is a 422 naming it.

Unknown email and wrong password answer the same 401 after the same bcrypt work, so neither
the body nor the timing tells an attacker which emails are registered. The route has its
own, stricter rate limit (``TOKEN_RATE_LIMIT``): distinct accounts per address (the
middleware), and failed password checks per account (``services.password_guesses``, which
DELETE /users/me spends too): a correct password costs nothing.

A hash made at another cost than ``BCRYPT_ROUNDS`` is remade at the current cost on the next
successful login: raising the cost later does not leave old accounts answering faster than
unknown emails (whose dummy check always runs at the current cost).
"""

from __future__ import annotations

import asyncio
import functools

import bcrypt
from litestar import post
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.status_codes import HTTP_200_OK

from features.token.queries import find_credentials, store_password_hash
from shared.accounts.credentials import normalize_email
from shared.accounts.passwords import bcrypt_cost, hash_password, verify_password
from shared.accounts.sessions import (
    LOGIN_EXAMPLE,
    TOKEN_RESPONSE_EXAMPLE,
    Grants,
    TokenForm,
    TokenResponse,
)
from shared.http.auth import TOKEN_PATH, login_refused
from shared.http.errors import error_responses
from shared.http.openapi import documented
from shared.http.rate_limit import own_rate_limit
from shared.http.routes import public
from shared.services import Services

TOKEN_GRANTS = "token_grants"  # the name the other grants are provided by (app.py)


@functools.cache
def _dummy_hash(rounds: int) -> bytes:
    """Checked when the email is unknown, so both failures cost the same bcrypt work."""
    return bcrypt.hashpw(b"not-a-real-password", bcrypt.gensalt(rounds))


@post(
    TOKEN_PATH,
    operation_id="token",
    **public(),
    operation_class=documented(request=LOGIN_EXAMPLE, answer=TOKEN_RESPONSE_EXAMPLE),
    status_code=HTTP_200_OK,
    tags=["users"],
    summary="Log in (OAuth2 password flow)",
    description=(
        "`grant_type=password` (the default): `username` (your email) and `password`."
        " `grant_type=refresh_token`: `refresh_token` from an earlier answer; the answer"
        " carries a new one and the one sent stops working. Presenting a used refresh token"
        " again revokes its whole session. Any refusal is the same 401."
    ),
    responses=error_responses(401, 413, 422, 429, 503),
    opt=own_rate_limit("token", distinct_accounts=True),
)
async def token(
    data: URLEncodedBody[TokenForm],
    services: NamedDependency[Services],
    token_grants: NamedDependency[Grants],
) -> TokenResponse:
    if data.grant_type != "password":
        return await token_grants[data.grant_type](data)
    settings = services.settings
    email = normalize_email(data.username or "")
    async with services.db.connect() as conn:
        found = await find_credentials(conn, email)
    if found is None:
        found_id, password_hash = None, await asyncio.to_thread(_dummy_hash, settings.bcrypt_rounds)
    else:
        found_id, password_hash = found

    async def verify() -> bool:
        return await verify_password(data.password or "", password_hash) and found_id is not None

    if not await services.password_guesses.check(email, verify) or found_id is None:
        raise login_refused()
    rehashed = None
    if bcrypt_cost(password_hash) != settings.bcrypt_rounds:
        rehashed = await hash_password(data.password or "", settings.bcrypt_rounds)
    async with services.db.begin() as conn:
        if rehashed is not None:
            await store_password_hash(conn, found_id, password_hash, rehashed)
        response = await services.sessions.start(conn, found_id)
        if response is None:
            raise login_refused()  # the account was deleted meanwhile
    return response
