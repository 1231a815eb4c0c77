"""POST /token/revoke (RFC 7009): log out, ending the refresh token's whole session.

Always 200, for unknown, expired and malformed tokens too (RFC 7009 §2.2): the answer tells
nothing about the token, and a client that logs out twice is not an error. Access tokens
already issued stay valid until they expire (they are checked by signature alone). The
revoke waits for a refresh of the session in flight (``shared/accounts/sessions.py``): once it has
answered, no refresh token of the session works, the one that refresh issued included.
"""

from __future__ import annotations

from litestar import post
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.status_codes import HTTP_200_OK

from features.revoke_token.queries import family_of
from features.revoke_token.schemas import REVOKE_EXAMPLE, RevokeForm
from shared.accounts.refresh_tokens import refresh_token_hash
from shared.accounts.sessions import revoke_session
from shared.http.errors import error_responses
from shared.http.openapi import documented
from shared.http.rate_limit import own_rate_limit
from shared.http.routes import public
from shared.services import Services


@post(
    "/token/revoke",
    operation_id="revokeToken",
    **public(),
    operation_class=documented(request=REVOKE_EXAMPLE),
    status_code=HTTP_200_OK,
    tags=["users"],
    summary="Log out: revoke a refresh token and its whole session (RFC 7009)",
    responses=error_responses(413, 422, 429, 503),
    # TOKEN_RATE_LIMIT per address, under its own key: a logout never spends /token's budget
    opt=own_rate_limit("revoke_token"),
)
async def revoke_token(
    data: URLEncodedBody[RevokeForm], services: NamedDependency[Services]
) -> None:
    token_hash = refresh_token_hash(data.token)
    if token_hash is None:
        return
    async with services.db.connect() as conn:  # two statements, each atomic alone
        family_id = await family_of(conn, token_hash)
        if family_id is not None:
            await revoke_session(conn, family_id)
