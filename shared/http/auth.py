"""Authentication, the Litestar side: OAuth2 bearer auth over signed claims, no table read.

Litestar's ``OAuth2PasswordBearerAuth`` reads the bearer header (only it: see
``BearerHeaderMiddleware``), ``SignedToken`` verifies the token with the deployment's keys and
its access-token policy (``shared.accounts.access_tokens``), and the user directory
(``shared.accounts.user_directory``) answers from memory whether the subject still exists.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import jwt
import msgspec
from litestar import Request
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.middleware.authentication import AuthenticationResult
from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, SecurityScheme
from litestar.security.jwt import OAuth2PasswordBearerAuth, Token
from litestar.security.jwt.middleware import JWTCookieAuthenticationMiddleware
from litestar.security.jwt.token import JWTDecodeOptions

from shared.accounts.access_tokens import (
    SIGNATURE_ONLY,
    AccessTokenPolicy,
    InvalidAccessToken,
    access_token_policy,
)
from shared.accounts.signing_keys import SigningKeys
from shared.accounts.user_directory import UserDirectory
from shared.accounts.verified_tokens import VerifiedTokens
from shared.http.routes import ops_path_patterns
from shared.services import Services
from shared.settings import Settings

TOKEN_PATH = "/token"
MAX_USER_ID = 2**31 - 1  # users.id is a PostgreSQL integer
# Wrong password, unknown email, and any refresh token that cannot be used: one answer.
LOGIN_REFUSED = "incorrect email or password"


def login_refused() -> NotAuthorizedException:
    """POST /token's one refusal, whichever grant and whatever the cause."""
    return NotAuthorizedException(detail=LOGIN_REFUSED)


class CurrentUser(msgspec.Struct, frozen=True):
    """Who is calling, as the token says; all a handler needs to scope its queries."""

    id: int


RetrieveUser = Callable[[Token, ASGIConnection[Any, Any, Any, Any]], Awaitable[CurrentUser | None]]


def user_retriever(users: UserDirectory) -> RetrieveUser:
    """Litestar's ``retrieve_user_handler`` over this app's user directory."""

    async def retrieve_user(
        token: Token, _connection: ASGIConnection[Any, Any, Any, Any]
    ) -> CurrentUser | None:
        """Trust the signature; check only that the subject still exists (from memory)."""
        if not token.sub.isascii() or not token.sub.isdigit():
            return None  # not an id we issued; int() would also take " 7", "+7" and "7_0"
        user_id = int(token.sub)
        if not 0 < user_id <= MAX_USER_ID:
            return None  # out of the column's range: the database would refuse the query
        if await users.exists(user_id):
            return CurrentUser(user_id)
        return None

    return retrieve_user


def provide_current_user(
    request: Request[CurrentUser, Token, Any],
    services: NamedDependency[Services],  # only so Litestar resolves this after it: see below
) -> CurrentUser:
    """The authenticated caller, for handlers to depend on by name.

    It names ``services`` so that a handler taking both gets them one after the other:
    Litestar resolves independent dependencies concurrently, in an anyio task group opened
    per request, which cost 5 % of a POST /orders' CPU for two values already at hand.
    """
    return request.user


class BearerHeaderMiddleware(JWTCookieAuthenticationMiddleware):
    """The token from ``Authorization: Bearer`` only.

    Litestar's OAuth2 middleware also reads a ``token`` cookie (which a browser attaches to a
    cross-site request by itself) and takes whatever follows the first space of the header,
    whatever the scheme (``Basic <jwt>`` passed). Neither is accepted here.
    """

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        scheme, _, encoded_token = connection.headers.get(self.auth_header, "").partition(" ")
        if scheme.lower() != "bearer" or not encoded_token.strip():
            raise NotAuthorizedException("a bearer token is required in the Authorization header")
        return await self.authenticate_token(
            encoded_token=encoded_token.strip(), connection=connection
        )


class BearerAuth(OAuth2PasswordBearerAuth[CurrentUser, Token]):
    """Litestar's OAuth2 bearer auth, header only, placed after the app's other middleware.

    Litestar puts auth first, so a request with no or a bad token never reached the rate
    limiter: it was neither counted nor refused with 429. Run second, the limiter sees every
    request, whatever its token.
    """

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config = super().on_app_init(app_config)
        app_config.middleware.append(app_config.middleware.pop(0))  # super() inserted it at 0
        return app_config

    @property
    def oauth_flow(self) -> OAuthFlow:
        """The password flow, whose token URL also takes the refresh grant (OpenAPI's
        ``refreshUrl``)."""
        return OAuthFlow(token_url=self.token_url, refresh_url=self.token_url, scopes={})

    @property
    def openapi_components(self) -> Components:
        """The scheme as OpenAPI 3.1 has an OAuth2 one: its type, flows and description.

        Litestar's also carries ``name``, ``in``, ``scheme`` and ``bearerFormat``, which belong
        to other scheme types: the document then fails the OpenAPI 3.1 schema, and strict
        client generators stop there.
        """
        return Components(
            security_schemes={
                self.openapi_security_scheme_name: SecurityScheme(
                    type="oauth2",
                    flows=OAuthFlows(password=self.oauth_flow),
                    description=self.description,
                )
            }
        )


class SignedToken(Token):
    """Litestar's token, verified with the deployment's keys and its access-token policy.

    Litestar's auth passes one secret; with a key set the verifying key depends on the token's
    ``kid``, so this picks it, lets PyJWT check the signature with the configured algorithm
    only, then the policy checks the header and claims (``shared.accounts.access_tokens``).
    A ``kid``
    that names no key (any ``kid`` under HS256) is refused. Only a token that passed all of
    it is remembered. Tokens are signed by ``TokenIssuer``, never through this class.
    """

    keys: ClassVar[SigningKeys]
    policy: ClassVar[AccessTokenPolicy]
    verified: ClassVar[VerifiedTokens]  # this app's tokens verified so far, until they expire

    def __post_init__(self) -> None:
        """Litestar's checks (``iat`` not one second ahead, ``exp`` ahead) are not repeated:
        the policy has checked both, with the clock skew Litestar's check does not allow."""

    @classmethod
    def for_keys(cls, keys: SigningKeys, policy: AccessTokenPolicy) -> type[SignedToken]:
        """A token class bound to one app's keys (tests build several apps in one process)."""
        attributes = {"keys": keys, "policy": policy, "verified": VerifiedTokens()}
        return type("SignedToken", (cls,), attributes)

    @classmethod
    def decode_payload(
        cls,
        encoded_token: str,
        secret: str,
        algorithms: list[str],
        issuer: str | Sequence[str] | None = None,
        audience: str | Sequence[str] | None = None,
        options: JWTDecodeOptions | None = None,
    ) -> Any:
        # The auth middleware is the only caller; the policy, not its options, judges claims.
        now = time.time()
        claims = cls.verified.get(encoded_token, now)
        if claims is not None:
            return claims
        key = cls.keys.verifying_key(jwt.get_unverified_header(encoded_token).get("kid"))
        if key is None:
            raise jwt.InvalidTokenError("the token's kid names no key")
        try:
            decoded = jwt.decode_complete(
                encoded_token,
                key=key,
                algorithms=algorithms,
                options=SIGNATURE_ONLY,
            )
            claims = decoded["payload"]
            cls.policy.check(decoded["header"], claims, now)
        except (jwt.PyJWTError, InvalidAccessToken) as exc:  # Litestar makes these a 401
            raise jwt.InvalidTokenError(str(exc)) from exc
        cls.verified.put(encoded_token, claims)
        return claims

    def encode(self, secret: str, algorithm: str) -> str:
        raise NotImplementedError("access tokens are signed by TokenIssuer")


def build_auth(
    settings: Settings, keys: SigningKeys, retrieve_user: RetrieveUser
) -> OAuth2PasswordBearerAuth[CurrentUser, Token]:
    """The app's bearer auth; ``retrieve_user`` is ``user_retriever(the app's directory)``."""
    return BearerAuth(
        token_secret=settings.jwt_secret,  # unused: SignedToken verifies with keys
        algorithm=keys.algorithm,
        token_cls=SignedToken.for_keys(keys, access_token_policy(settings)),
        token_url=TOKEN_PATH,
        retrieve_user_handler=retrieve_user,
        default_token_expiration=timedelta(minutes=settings.access_token_expire_minutes),
        exclude=ops_path_patterns(),
        description=(
            "Log in with your email as `username` (OAuth2 password flow). The answer's"
            " `refresh_token` gets new tokens from the same URL (`grant_type=refresh_token`)."
        ),
        authentication_middleware_class=BearerHeaderMiddleware,
    )
