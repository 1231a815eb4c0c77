"""Facts about credentials that registration, login and the login limiter share.

Pure code: the email's normal form and shape, and the password's length in bcrypt's unit.
"""

from __future__ import annotations

import re

# Deliberately plain: one @, no spaces, a dot in the domain. Deliverability is not our call.
# No NUL either: PostgreSQL cannot store it in text (it would be a 500, not a 422).
_EMAIL_BODY = r"[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+"
EMAIL_PATTERN = re.compile(rf"^{_EMAIL_BODY}$")
# The same rule for the OpenAPI schema, which sees the address before it is trimmed.
EMAIL_SCHEMA_PATTERN = rf"^\s*{_EMAIL_BODY}\s*$"
EMAIL_MAX_LENGTH = 320

BCRYPT_MAX_BYTES = 72  # bcrypt reads no further (bcrypt>=5 raises): refuse, never cut
PASSWORD_MIN_BYTES = 8
PASSWORD_MAX_BYTES = BCRYPT_MAX_BYTES


def normalize_email(email: str) -> str:
    """The form an email is stored, looked up and rate-limited under: trimmed, lower-cased."""
    return email.strip().lower()


def looks_like_email(email: str) -> bool:
    """True for a normalised address of the plain shape ``EMAIL_PATTERN`` describes."""
    return EMAIL_PATTERN.fullmatch(email) is not None


def password_size_ok(password: str) -> bool:
    """``PASSWORD_MIN_BYTES`` to ``PASSWORD_MAX_BYTES`` in UTF-8, bcrypt's unit."""
    return PASSWORD_MIN_BYTES <= len(password.encode()) <= PASSWORD_MAX_BYTES
