"""POST /register: create an account. Email normalised, bcrypt off the loop, 409 when taken.

A taken email is answered before any bcrypt work, so a flood of known emails costs no CPU;
the 409 tells nothing the contract does not already say. Registrations count against the
stricter ``TOKEN_RATE_LIMIT`` per address (``shared.http.rate_limit``).
"""

from __future__ import annotations

from litestar import post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_409_CONFLICT

from features.register.queries import email_taken, insert_user
from features.register.schemas import REGISTER_EXAMPLE, RegisterRequest
from shared.accounts.passwords import hash_password
from shared.accounts.users import USER_EXAMPLE, UserView
from shared.http.errors import error_responses
from shared.http.openapi import documented
from shared.http.rate_limit import own_rate_limit
from shared.http.routes import public
from shared.services import Services


@post(
    "/register",
    operation_id="register",
    **public(),
    operation_class=documented(request=REGISTER_EXAMPLE, answer=USER_EXAMPLE),
    status_code=HTTP_201_CREATED,
    tags=["users"],
    summary="Register a user",
    responses=error_responses(409, 413, 415, 422, 429, 503),
    opt=own_rate_limit("register"),  # TOKEN_RATE_LIMIT per address: each may cost a hash
)
async def register(
    data: JSONBody[RegisterRequest],
    services: NamedDependency[Services],
) -> UserView:
    async with services.db.connect() as conn:  # handed back to the pool while bcrypt runs
        taken = await email_taken(conn, data.email)
    if taken:
        raise _conflict()
    password_hash = await hash_password(data.password, services.settings.bcrypt_rounds)
    async with services.db.connect() as conn:  # one INSERT: atomic alone
        user = await insert_user(conn, data.email, password_hash)
    if user is None:  # registered meanwhile by a concurrent request
        raise _conflict()
    return user


def _conflict() -> HTTPException:
    return HTTPException(status_code=HTTP_409_CONFLICT, detail="email already registered")
