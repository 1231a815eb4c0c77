"""Refresh tokens as values: how one is made, recognised and stored. Pure code, no I/O.

A refresh token is opaque: 32 random bytes (256 bits) in URL-safe base64, 43 characters.
The server keeps only its SHA-256: a stolen table lets nobody refresh. SHA-256 without a
salt or a slow hash is enough here, as the input is random and as long as the digest.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

REFRESH_TOKEN_BYTES = 32
# token_urlsafe(32): 43 characters of the URL-safe alphabet, no padding.
_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def new_refresh_token() -> str:
    return secrets.token_urlsafe(REFRESH_TOKEN_BYTES)


def refresh_token_hash(token: str) -> bytes | None:
    """The stored form of a token, or None for a string that is not one of ours (a JWT, say):
    such a value is refused without a database round trip."""
    if not _SHAPE.fullmatch(token):
        return None
    return hashlib.sha256(token.encode("ascii")).digest()


def refresh_token_expiry(now: datetime, lifetime: timedelta, session_end: datetime) -> datetime:
    """When a token issued ``now`` stops working: after its own lifetime, but never past the
    end of its session (SESSION_MAX_DAYS after the login), however often it was refreshed."""
    return min(now + lifetime, session_end)
