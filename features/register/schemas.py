"""POST /register: what comes in, what goes out, and the rules on both."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import msgspec

# Deliberately plain: one @, no spaces, a dot in the domain. Deliverability is not our call.
# No NUL either: PostgreSQL cannot store it in text (it would be a 500, not a 422).
EMAIL_PATTERN = re.compile(r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$")
PASSWORD_MIN_BYTES = 8
PASSWORD_MAX_BYTES = 72  # bcrypt ignores what follows; refuse rather than cut silently


# The same rule for the OpenAPI schema, before trimming: clients and fuzzers see what is refused.
EMAIL_SCHEMA_PATTERN = r"^\s*[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+\s*$"


class RegisterRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    email: Annotated[
        str,
        msgspec.Meta(
            max_length=320,
            examples=["ada@example.com"],
            description="trimmed and lower-cased before it is stored",
            extra_json_schema={"extra": {"pattern": EMAIL_SCHEMA_PATTERN}},
        ),
    ]
    # Counted in UTF-8 bytes (bcrypt's unit), which JSON Schema cannot express; 72 characters
    # is the most any valid password can have, so the documented maxLength never admits one
    # that the server refuses for length in characters.
    password: Annotated[
        str,
        msgspec.Meta(
            examples=["correct horse battery"],
            description=f"{PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes in UTF-8",
            extra_json_schema={"extra": {"max_length": PASSWORD_MAX_BYTES}},
        ),
    ]

    def __post_init__(self) -> None:
        email = normalize_email(self.email)
        if not EMAIL_PATTERN.fullmatch(email):
            raise ValueError("`email` does not look like an address")
        size = len(self.password.encode())
        if not PASSWORD_MIN_BYTES <= size <= PASSWORD_MAX_BYTES:
            raise ValueError(
                f"`password` must be {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes in UTF-8,"
                f" got {size}"
            )
        msgspec.structs.force_setattr(self, "email", email)


class UserView(msgspec.Struct, frozen=True):
    id: int
    email: str
    created_at: datetime


def normalize_email(email: str) -> str:
    return email.strip().lower()
