"""DELETE /users/me: close the account, after checking the password again.

204, then: the user's orders, unsent events, refresh tokens and cached orders are gone, and
the email may register again. Every access token of theirs is refused at once: this process
forgets the user before answering, the others on PostgreSQL's ``user_deleted`` notice.
"""

from __future__ import annotations

import functools

from litestar import delete
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.params import JSONBody
from litestar.status_codes import HTTP_204_NO_CONTENT

from features.delete_account.queries import credentials_of, delete_user
from features.delete_account.schemas import DELETE_ACCOUNT_EXAMPLE, DeleteAccountRequest
from shared.accounts.passwords import verify_password
from shared.http.auth import CurrentUser
from shared.http.errors import error_responses
from shared.http.openapi import documented
from shared.http.rate_limit import own_rate_limit
from shared.services import Services


@delete(
    "/users/me",
    operation_id="deleteMe",
    operation_class=documented(request=DELETE_ACCOUNT_EXAMPLE),
    status_code=HTTP_204_NO_CONTENT,
    tags=["users"],
    summary="Delete your account, its orders and sessions (the password again in the body)",
    responses=error_responses(401, 403, 413, 415, 422, 429, 503),
    # A password guess each: TOKEN_RATE_LIMIT per address, not the API-wide RATE_LIMIT; and
    # its failures spend the account's password budget, /token's, so a stolen access token
    # buys no guesses beyond what /token gives, from however many addresses
    opt=own_rate_limit("delete_account"),
)
async def delete_account(
    data: JSONBody[DeleteAccountRequest],
    current_user: NamedDependency[CurrentUser],
    services: NamedDependency[Services],
) -> None:
    async with services.db.connect() as conn:  # handed back to the pool while bcrypt runs
        credentials = await credentials_of(conn, current_user.id)
    if credentials is None:
        raise NotAuthorizedException("user no longer exists")
    email, password_hash = credentials
    if not await services.password_guesses.check(
        email, functools.partial(verify_password, data.password, password_hash)
    ):
        raise PermissionDeniedException("incorrect password")
    async with services.db.begin() as conn:
        order_ids = await delete_user(conn, current_user.id)
    if order_ids is None:  # a concurrent deletion won
        raise NotAuthorizedException("user no longer exists")
    services.users.forget(current_user.id)
    await services.order_cache.forget(order_ids)
