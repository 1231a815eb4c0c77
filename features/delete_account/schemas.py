"""DELETE /users/me's body: the password, checked again before anything is deleted."""

from __future__ import annotations

from typing import Annotated

import msgspec


class DeleteAccountRequest(msgspec.Struct, frozen=True):
    password: Annotated[str, msgspec.Meta(max_length=1024, examples=["correct horse battery"])]
