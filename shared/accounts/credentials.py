"""Facts about credentials that registration, login and the login limiter share.

Pure code: the email's normal form and shape, and the password's length in bcrypt's unit.

An email's normal form: trimmed, NFKC (a full-width ``ｅ`` or ``＠`` is the plain letter,
so look-alike addresses are one account), lower-cased, and its domain mapped by IDNA's
UTS #46 and kept in its ASCII form (``bücher.example`` is stored as
``xn--bcher-kva.example``). ASCII, because it is the one form every mail system and DNS
accepts, and it is a fixed point: normalising it again changes nothing, so a user may log
in with either spelling of the domain. Lengths are checked on the normal form, the one that
is stored: lower-casing alone can double an address (``İ`` becomes two code points).
"""

from __future__ import annotations

import re
import unicodedata

import idna

# Deliberately plain: one @, no spaces, a dot in the domain. Deliverability is not our call.
# No NUL either: PostgreSQL cannot store it in text (it would be a 500, not a 422).
_EMAIL_BODY = r"[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+"
EMAIL_PATTERN = re.compile(rf"^{_EMAIL_BODY}$")
# The same rule for the OpenAPI schema, which sees the address before it is trimmed.
EMAIL_SCHEMA_PATTERN = rf"^\s*{_EMAIL_BODY}\s*$"
EMAIL_MAX_LENGTH = 320
# A bound on the Unicode and IDNA work one request can cause (the limiter reads the form
# before the route checks it): text this long would have to lose three quarters of itself
# to normalisation to fit, so it is refused unread.
_RAW_MAX_LENGTH = 4 * EMAIL_MAX_LENGTH

BCRYPT_MAX_BYTES = 72  # bcrypt reads no further (bcrypt>=5 raises): refuse, never cut
PASSWORD_MIN_BYTES = 8
PASSWORD_MAX_BYTES = BCRYPT_MAX_BYTES


class EmailRefused(ValueError):
    """An address that cannot be an account's; the message says why (a 422 at /register)."""


def registrable_email(email: str) -> str:
    """``email`` in its normal form, or ``EmailRefused``: a domain IDNA refuses, a shape
    that is not an address, or a normal form longer than ``EMAIL_MAX_LENGTH``."""
    if len(email) > _RAW_MAX_LENGTH:  # before any Unicode work: bounded cost per request
        raise EmailRefused(f"`email` is longer than {EMAIL_MAX_LENGTH} characters")
    text = unicodedata.normalize("NFKC", email.strip()).lower()
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise EmailRefused("`email` does not look like an address")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:  # InvalidCodepoint and the rest are IDNAErrors too
        raise EmailRefused(f"`email` has a domain IDNA refuses: {exc}") from exc
    normal = f"{local}@{ascii_domain}"
    if len(normal) > EMAIL_MAX_LENGTH:
        raise EmailRefused(
            f"`email` is {len(normal)} characters once normalised, more than {EMAIL_MAX_LENGTH}"
        )
    if not looks_like_email(normal):
        raise EmailRefused("`email` does not look like an address")
    return normal


def normalize_email(email: str) -> str:
    """The form a login is looked up and rate-limited under; never raises.

    The normal form where there is one. Text that has none (not an address, a domain IDNA
    refuses) is no account registered since the normal form was introduced; it is kept as
    stored before (trimmed, NFKC, lower-cased), so it still counts against the limits and
    still finds an older row that IDNA would refuse.
    """
    try:
        return registrable_email(email)
    except EmailRefused:
        return unicodedata.normalize("NFKC", email.strip()).lower()


def looks_like_email(email: str) -> bool:
    """True for a normalised address of the plain shape ``EMAIL_PATTERN`` describes."""
    return EMAIL_PATTERN.fullmatch(email) is not None


def password_size_ok(password: str) -> bool:
    """``PASSWORD_MIN_BYTES`` to ``PASSWORD_MAX_BYTES`` in UTF-8, bcrypt's unit."""
    return PASSWORD_MIN_BYTES <= len(password.encode()) <= PASSWORD_MAX_BYTES
