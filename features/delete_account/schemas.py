"""DELETE /users/me's body: the password, checked again before anything is deleted."""

from __future__ import annotations

from typing import Annotated

import msgspec

# Not the walk-through's password either (the OpenAPI document's example).
DELETE_ACCOUNT_EXAMPLE = {"password": "your current password"}


class DeleteAccountRequest(msgspec.Struct, frozen=True):
    # Not register's example password: a client (or a fuzzer) trying the documented example
    # would close the account that registered with it.
    password: Annotated[
        str, msgspec.Meta(max_length=1024, description="your current password, checked again")
    ]
