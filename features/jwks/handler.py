"""GET /.well-known/jwks.json: the public keys that verify our access tokens (RFC 7517).

Another service verifies a token from this alone: it picks the key by the token's ``kid``.
Under HS256 there is no public key to give (``{"keys": []}``). Built once at start-up;
clients may cache it for a few minutes, and a rotation lists the previous key for as long
as its tokens live (``JWT_PREVIOUS_PUBLIC_KEYS``).
"""

from __future__ import annotations

import functools

import msgspec
from litestar import get
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency

from features.jwks.schemas import JWKS_EXAMPLE, JWKSet
from shared.accounts.signing_keys import SigningKeys
from shared.http.errors import error_responses
from shared.http.openapi import documented
from shared.http.routes import public
from shared.services import Services

MAX_AGE_S = 300


@get(
    "/.well-known/jwks.json",
    operation_id="getJwks",
    **public(),
    operation_class=documented(answer=JWKS_EXAMPLE),
    tags=["users"],
    summary="The public keys that verify access tokens (JWK Set)",
    responses=error_responses(429),
    cache_control=CacheControlHeader(max_age=MAX_AGE_S, public=True),
    sync_to_thread=False,
)
def jwks(services: NamedDependency[Services]) -> JWKSet:
    return _key_set(services.signing_keys)


@functools.lru_cache(maxsize=8)  # one per app: the keys never change while it runs
def _key_set(keys: SigningKeys) -> JWKSet:
    return msgspec.convert(keys.jwks, JWKSet)
