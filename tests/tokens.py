"""Access tokens made by hand, valid by every rule unless a test changes one (API.md, RFC 9068).

A forgery test starts from a token the API would accept and breaks one thing, so a 401 shows
that very rule at work, not a missing claim the test forgot.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from shared.accounts.access_tokens import FIRST_PARTY_CLIENT_ID, TOKEN_TYPE
from shared.accounts.signing_keys import SigningKeys
from shared.settings import Settings

DROP = object()  # a claim or header value that means "leave this one out"


def bearer(token: str) -> dict[str, str]:
    """The one way a request carries an access token (API.md): ``Authorization: Bearer``."""
    return {"Authorization": f"Bearer {token}"}


def valid_claims(settings: Settings, sub: int | str, **changes: Any) -> dict[str, Any]:
    """The claims the API issues for ``sub`` now, with ``changes`` (``DROP`` removes one)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(sub),
        "client_id": FIRST_PARTY_CLIENT_ID,
        "iat": now,
        "exp": now + settings.access_token_expire_minutes * 60,
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not DROP}


def sign(claims: dict[str, Any], keys: SigningKeys, **header: Any) -> str:
    """``claims`` signed with ``keys``' signing key (the real one, for a forgery by the book),
    header ``typ: at+jwt`` and the key's ``kid`` unless ``header`` changes them."""
    fields: dict[str, Any] = {"typ": TOKEN_TYPE}
    if keys.signing_kid:
        fields["kid"] = keys.signing_kid
    fields.update(header)
    dropped = [name for name, value in fields.items() if value is DROP]
    kept = {name: value for name, value in fields.items() if value is not DROP}
    if "typ" in dropped:
        kept["typ"] = None  # PyJWT writes typ JWT unless told None, which leaves it out
    return jwt.encode(claims, keys.signing_key, algorithm=keys.algorithm, headers=kept)


def decode(token: str, settings: Settings, key: Any, algorithm: str) -> dict[str, Any]:
    """What a resource server verifying our tokens by the profile reads from one."""
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key,
        algorithms=[algorithm],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        options={"require": ["iss", "aud", "sub", "iat", "exp", "jti", "client_id"]},
    )
    return claims
