"""Access tokens this process has already verified, kept until they expire.

An access token is a pure function of its signature: once verified, it stays valid until its
``exp`` (nothing revokes an access token; a deleted user is refused by the user directory,
which every request still asks). Verifying it again on each request is the largest cost of
the auth layer (an HMAC or RSA check plus PyJWT's claim checks: BENCHMARKS.md), so each
process remembers the claims of the tokens it verified, bounded in number.

Only tokens that passed verification get in (the signature, and every claim rule of
``shared.accounts.access_tokens``), so a flood of forged tokens cannot fill it, and none stays
longer
than the lifetime the deployment issues (plus the clock skew); the oldest entry leaves when
it is full.
"""

from __future__ import annotations

from typing import Any

MAX_VERIFIED_TOKENS = 4096


class VerifiedTokens:
    def __init__(self, max_size: int = MAX_VERIFIED_TOKENS) -> None:
        self._max_size = max_size
        self._claims: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._claims)

    def get(self, encoded: str, now: float) -> dict[str, Any] | None:
        """A copy of the token's claims (callers mutate theirs) while ``exp`` is ahead."""
        claims = self._claims.get(encoded)
        if claims is None:
            return None
        if not claims["exp"] > now:  # expired: verifying again would refuse it too
            del self._claims[encoded]
            return None
        return dict(claims)

    def put(self, encoded: str, claims: dict[str, Any]) -> None:
        """Remember verified ``claims`` (a copy); one without a numeric ``exp`` is not kept."""
        if not isinstance(claims.get("exp"), int | float) or isinstance(claims["exp"], bool):
            return
        if encoded not in self._claims and len(self._claims) >= self._max_size:
            del self._claims[next(iter(self._claims))]  # the oldest: dicts keep insertion order
        self._claims[encoded] = dict(claims)
