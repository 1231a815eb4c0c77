"""POST /register: create an account. Email normalised, bcrypt off the loop, 409 when taken."""

from __future__ import annotations

from litestar import post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_201_CREATED, HTTP_409_CONFLICT
from sqlalchemy.ext.asyncio import AsyncSession

from features.register.queries import insert_user
from features.register.schemas import RegisterRequest, UserView
from shared.auth import hash_password
from shared.errors import error_responses
from shared.settings import Settings


@post(
    "/register",
    status_code=HTTP_201_CREATED,
    exclude_from_auth=True,
    tags=["users"],
    summary="Register a user",
    responses=error_responses(409, 413, 422, 429, 503),
    security=[{}],  # OpenAPI's "no credentials needed"; the app-wide default is the bearer token
)
async def register(
    data: RegisterRequest,
    db_session: NamedDependency[AsyncSession],
    settings: NamedDependency[Settings],
) -> UserView:
    password_hash = await hash_password(data.password, settings.bcrypt_rounds)
    user = await insert_user(db_session, data.email, password_hash)
    if user is None:
        raise HTTPException(status_code=HTTP_409_CONFLICT, detail="email already registered")
    return user
