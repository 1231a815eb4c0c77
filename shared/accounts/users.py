"""A user as the API shows it: POST /register answers with it, GET /users/me too."""

from __future__ import annotations

from datetime import datetime

import msgspec


class UserView(msgspec.Struct, frozen=True):
    id: int
    email: str
    created_at: datetime
