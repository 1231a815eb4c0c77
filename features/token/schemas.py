"""POST /token: the OAuth2 password-flow form and the token response."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from shared.credentials import EMAIL_MAX_LENGTH


class TokenForm(msgspec.Struct, frozen=True):
    """Form fields as OAuth2 names them; ``username`` is the email."""

    username: Annotated[str, msgspec.Meta(max_length=EMAIL_MAX_LENGTH)]
    password: Annotated[str, msgspec.Meta(max_length=1024)]
    grant_type: Literal["password"] | None = None
    scope: str = ""


class TokenResponse(msgspec.Struct, frozen=True):
    access_token: str
    expires_in: int
    token_type: Literal["bearer"] = "bearer"
