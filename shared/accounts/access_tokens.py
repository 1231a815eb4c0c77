"""Access tokens by the RFC 9068 profile: what one says, what a presented one must say, and
the issuer that signs them (``TokenIssuer``). The rules are pure.

The JWKS is public so that other services can verify our tokens; a token therefore names who
issued it (``iss``) and for whom (``aud``), and its header says what it is (``typ: at+jwt``),
so an ID token or any other JWT signed with the same key is not taken for an access token.

PyJWT checks the signature and the algorithm (``shared.http.auth``); every rule about the claims
is here, checked against one clock, so the rules and their clock skew are stated once:

- the header's ``typ`` is ``at+jwt`` (or ``application/at+jwt``, RFC 9068 §4);
- ``iss``, ``aud``, ``sub``, ``iat``, ``exp``, ``jti`` and ``client_id`` are all present;
  ``iss``, ``aud`` and ``client_id`` are this deployment's;
- ``iat`` is not later than now plus ``CLOCK_SKEW_S``; ``exp`` is after now (no skew: the
  memo of verified tokens forgets a token at its ``exp``, and so does a fresh check);
- the lifetime ``exp − iat`` is at most ``ACCESS_TOKEN_EXPIRE_MINUTES`` plus the skew: a
  token signed with the right key but meant to live for years is not believed.

PyJWT's own claim checks are off: its one ``leeway`` would stretch ``exp`` as well as ``iat``.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from jwt.types import Options

from shared.accounts.signing_keys import SigningKeys
from shared.settings import Settings

TOKEN_TYPE = "at+jwt"
ACCEPTED_TOKEN_TYPES = frozenset({TOKEN_TYPE, "application/at+jwt"})
# How far another API process's clock may run ahead of this one's: an ``iat`` up to this far
# in the future, and a lifetime this much longer than configured, are still believed.
CLOCK_SKEW_S = 30
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "exp", "jti", "client_id")
# RFC 9068 §2.2 requires ``client_id``: the client the token was issued to. POST /token serves
# public clients only (RFC 6749 §2.1): no client registers or authenticates, and the form's
# optional ``client_id`` is whatever the caller typed (Swagger UI sends an empty one). The
# server cannot tell one client from another, so every token names the one client it knows:
# the service's own first-party client. Echoing the caller's value would put an unverified
# name in a signed claim; a setting would configure a value nothing else reads.
FIRST_PARTY_CLIENT_ID = "first-party"
# RFC 9068 leaves the ``jti`` format open; 16 random bytes never collide in practice.
JTI_BYTES = 16

# PyJWT's options for a token whose claims ``AccessTokenPolicy.check`` judges: the signature
# and the algorithm only (``sub`` and ``jti`` keep PyJWT's type checks: they are strings).
SIGNATURE_ONLY: Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
}


class InvalidAccessToken(ValueError):
    """The token is signed by us but breaks a rule of the profile; the message says which."""


def _is_time(value: object) -> bool:
    """A NumericDate (RFC 7519 §2): a finite JSON number, not a string or a boolean."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class AccessTokenPolicy:
    """This deployment's access tokens: their issuer, audience and lifetime."""

    issuer: str
    audience: str
    lifetime_s: int
    skew_s: int = CLOCK_SKEW_S

    def claims(self, subject: str, now: int, jti: str) -> dict[str, Any]:
        """What a new token says: the profile's claims and nothing the API does not read."""
        return {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "client_id": FIRST_PARTY_CLIENT_ID,
            "iat": now,
            "exp": now + self.lifetime_s,
            "jti": jti,
        }

    def check(self, header: Mapping[str, Any], claims: Mapping[str, Any], now: float) -> None:
        """Refuse (``InvalidAccessToken``) a token whose signature held but whose header or
        claims break the profile or this deployment's rules."""
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TOKEN_TYPES:
            raise InvalidAccessToken(f"typ must be {TOKEN_TYPE}")
        missing = [name for name in REQUIRED_CLAIMS if claims.get(name) is None]
        if missing:
            raise InvalidAccessToken(f"missing claims: {', '.join(missing)}")
        if claims["iss"] != self.issuer:
            raise InvalidAccessToken("wrong issuer")
        if not self._for_us(claims["aud"]):
            raise InvalidAccessToken("wrong audience")
        if claims["client_id"] != FIRST_PARTY_CLIENT_ID:
            raise InvalidAccessToken("unknown client_id")
        for name in ("sub", "jti"):
            if not isinstance(claims[name], str) or not claims[name]:
                raise InvalidAccessToken(f"{name} must be a non-empty string")
        iat, exp, nbf = claims["iat"], claims["exp"], claims.get("nbf")
        if not _is_time(iat) or not _is_time(exp) or not (nbf is None or _is_time(nbf)):
            raise InvalidAccessToken("iat, exp and nbf must be numbers")
        if iat > now + self.skew_s:
            raise InvalidAccessToken("issued in the future")
        if nbf is not None and nbf > now + self.skew_s:
            raise InvalidAccessToken("not valid yet")
        if not exp > now:
            raise InvalidAccessToken("expired")
        if not 0 < exp - iat <= self.lifetime_s + self.skew_s:
            raise InvalidAccessToken("lifetime longer than this deployment issues")

    def _for_us(self, audience: object) -> bool:
        """``aud`` is our audience, or a list holding it (RFC 7519 §4.1.3)."""
        if isinstance(audience, str):
            return audience == self.audience
        return isinstance(audience, list) and self.audience in audience


def access_token_policy(settings: Settings) -> AccessTokenPolicy:
    return AccessTokenPolicy(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lifetime_s=settings.access_token_expire_minutes * 60,
    )


class TokenIssuer:
    """Signs access tokens by the RFC 9068 profile; what POST /token depends on."""

    def __init__(self, keys: SigningKeys, policy: AccessTokenPolicy) -> None:
        self._keys = keys
        self._policy = policy
        kid = {"kid": keys.signing_kid} if keys.signing_kid else {}
        self._header = {"typ": TOKEN_TYPE, **kid}
        self.lifetime = timedelta(seconds=policy.lifetime_s)

    def issue(self, user_id: int) -> str:
        jti = secrets.token_urlsafe(JTI_BYTES)
        claims = self._policy.claims(str(user_id), int(time.time()), jti)
        return jwt.encode(
            claims, key=self._keys.signing_key, algorithm=self._keys.algorithm, headers=self._header
        )
