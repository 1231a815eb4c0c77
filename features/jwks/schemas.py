"""GET /.well-known/jwks.json's answer: a JWK Set (RFC 7517 §5) of signature keys."""

from __future__ import annotations

import msgspec


class PublicJWK(msgspec.Struct, frozen=True, omit_defaults=True):
    """An RSA (``n``, ``e``) or EC (``crv``, ``x``, ``y``) public key."""

    kty: str
    kid: str
    use: str
    alg: str
    n: str | None = None
    e: str | None = None
    crv: str | None = None
    x: str | None = None
    y: str | None = None


class JWKSet(msgspec.Struct, frozen=True):
    keys: list[PublicJWK]
