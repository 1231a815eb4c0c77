"""A user as the API shows it: POST /register answers with it, GET /users/me too."""

from __future__ import annotations

from datetime import datetime

import msgspec


class UserView(msgspec.Struct, frozen=True):
    id: int
    email: str
    created_at: datetime


# The README walk-through's user, as the OpenAPI document shows it (shared.http.openapi).
USER_EXAMPLE = {"id": 1, "email": "ada@example.com", "created_at": "2026-01-05T09:30:00Z"}
