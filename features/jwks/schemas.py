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


# An ES256 deployment's key set (RFC 7517's example key; under HS256, the default, it is
# ``{"keys": []}``).
JWKS_EXAMPLE = {
    "keys": [
        {
            "kty": "EC",
            "kid": "2026-01",
            "use": "sig",
            "alg": "ES256",
            "crv": "P-256",
            "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
            "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
        }
    ]
}
