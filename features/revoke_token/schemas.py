"""POST /token/revoke's form (RFC 7009 §2.1)."""

from __future__ import annotations

from typing import Annotated

import msgspec

# A refresh token from /token's answer (the OpenAPI document's example).
REVOKE_EXAMPLE = {"token": "f3q9Yx2bVb8mK1rT0cW7nA5eJ4hL6pD2sG9uZ3oQ8iE"}


class RevokeForm(msgspec.Struct, frozen=True):
    token: Annotated[str, msgspec.Meta(max_length=512, description="a refresh token")]
    # RFC 7009 lets a client hint the kind; only refresh tokens can be revoked here.
    token_type_hint: str | None = None
