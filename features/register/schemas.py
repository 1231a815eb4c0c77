"""POST /register: what comes in, what goes out, and the rules on both."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.accounts.credentials import (
    EMAIL_MAX_LENGTH,
    EMAIL_SCHEMA_PATTERN,
    PASSWORD_MAX_BYTES,
    PASSWORD_MIN_BYTES,
    password_size_ok,
    registrable_email,
)

# The README walk-through's registration (the OpenAPI document's example).
REGISTER_EXAMPLE = {"email": "ada@example.com", "password": "correct horse"}


class RegisterRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    email: Annotated[
        str,
        msgspec.Meta(
            max_length=EMAIL_MAX_LENGTH,
            examples=["ada@example.com"],
            description=(
                "trimmed, NFKC, lower-cased and its domain by IDNA (UTS #46, ASCII form) before"
                f" it is stored; at most {EMAIL_MAX_LENGTH} characters in that form"
            ),
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
        email = registrable_email(self.email)  # EmailRefused: a ValueError, so a 422
        if not password_size_ok(self.password):
            raise ValueError(
                f"`password` must be {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes in UTF-8,"
                f" got {len(self.password.encode())}"
            )
        msgspec.structs.force_setattr(self, "email", email)
