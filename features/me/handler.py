"""GET /users/me: who the bearer token belongs to."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException

from features.me.queries import find_user
from shared.accounts.users import USER_EXAMPLE, UserView
from shared.http.auth import CurrentUser
from shared.http.errors import error_responses
from shared.http.openapi import documented
from shared.services import Services


@get(
    "/users/me",
    operation_id="getMe",
    operation_class=documented(answer=USER_EXAMPLE),
    tags=["users"],
    summary="Who am I",
    responses=error_responses(401, 429, 503),
)
async def me(
    current_user: NamedDependency[CurrentUser], services: NamedDependency[Services]
) -> UserView:
    async with services.db.connect() as conn:
        user = await find_user(conn, current_user.id)
    if user is None:  # deleted since the token was checked
        raise NotAuthorizedException("user no longer exists")
    return user
