"""One error shape for every failure: ``{"status_code", "detail", "field"?, "errors"?}``, JSON only.

Validation failures are 422 everywhere (the contract lets us pick 400 or 422; we keep one).
Infrastructure faults a client cannot fix become 503 with ``Retry-After``, never a 500 page.
"""

from __future__ import annotations

import logging
import re
import traceback
from enum import Enum
from typing import Any

import asyncpg
import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from shared.accounts.passwords import BCRYPT_BUSY_RETRY_AFTER_S, BcryptBusy
from shared.db import is_connection_lost
from shared.logs import describe_error, error_fields

logger = logging.getLogger(__name__)


class FieldError(msgspec.Struct, frozen=True):
    """One reason a request did not validate (a 422's ``errors``): every member is always sent,
    ``null`` where there is nothing to name."""

    field: str | None  # e.g. ``items[0].price``
    message: str
    source: str | None  # where the value was: body, query, path, header, cookie


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error's body. Its members are plain types, one object type in ``errors``: what
    client generators read (a list of free-form objects was a union some could not)."""

    status_code: int
    detail: str
    field: str | None = None
    errors: list[FieldError] | None = None


class UnprocessableEntity(HTTPException):
    """A well-formed request that breaks a rule (a total that does not add up, say)."""

    status_code = HTTP_422_UNPROCESSABLE_ENTITY

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail=detail, extra={"field": field} if field else None)


def error_response(
    status_code: int,
    detail: str,
    *,
    field: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorBody]:
    body = ErrorBody(status_code=status_code, detail=detail, field=field, errors=errors)
    return Response(
        body,
        status_code=status_code,
        headers=headers,
        media_type=MediaType.JSON,
    )


_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")
# Our own checks in a Struct's __post_init__ start with the field's name in backticks.
_NAMED = re.compile(r"^`(?P<name>\w+)` ")
_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def _field_of(error: dict[str, Any]) -> tuple[str | None, str]:
    """``{"key": "items.0", "message": "`price` must…"}`` → ("items[0].price", "must…")."""
    message = str(error.get("message", "invalid value"))
    key = str(error.get("key") or "")
    path = _INDEX.sub(r"[\1]", key) if key and key != "data" else ""
    named = _MISSING.search(message) or _NAMED.match(message)
    if named:
        path = f"{path}.{named['name']}" if path else named["name"]
        if message.startswith("`"):
            message = message[named.end() :]
    return path or None, message


def handle_validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorBody]:
    raw = exc.extra if isinstance(exc.extra, list) else []
    errors: list[FieldError] = []
    for item in raw:
        if isinstance(item, dict):
            field, message = _field_of(item)
            source = item.get("source")  # "body", or a ParamType (a str Enum): its value
            source = source.value if isinstance(source, Enum) else source
            errors.append(FieldError(field, message, None if source is None else str(source)))
    first = errors[0] if errors else None
    detail: str
    if first and first.field:
        detail = f"{first.field}: {first.message}"
    elif first:
        detail = first.message
    else:
        detail = exc.detail or "invalid request"
    return error_response(
        HTTP_422_UNPROCESSABLE_ENTITY,
        detail,
        field=first.field if first else None,
        errors=errors or None,
    )


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    """Litestar's own 4xx (malformed JSON, 404, 405, 413, 429) in our shape."""
    headers = dict(exc.headers or {})
    status_code = exc.status_code
    if status_code == HTTP_400_BAD_REQUEST:
        status_code = HTTP_422_UNPROCESSABLE_ENTITY  # one status for every unusable body
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    if exc.status_code == HTTP_401_UNAUTHORIZED:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if isinstance(exc, TooManyRequestsException):
        # Litestar's limiter sends RateLimit-Reset (seconds); Retry-After is the same wait.
        headers.setdefault("Retry-After", headers.get("RateLimit-Reset", "60"))
    if exc.status_code >= HTTP_500_INTERNAL_SERVER_ERROR:
        logger.error("server error %s on %s %s", exc.status_code, request.method, request.url.path)
    return error_response(
        status_code,
        exc.detail,
        field=extra.get("field"),
        headers=headers or None,
    )


def handle_unauthorized(
    request: Request[Any, Any, Any], exc: NotAuthorizedException
) -> Response[ErrorBody]:
    """Every 401 carries the challenge header the contract asks for."""
    return error_response(
        HTTP_401_UNAUTHORIZED,
        exc.detail or "not authenticated",
        headers={**(exc.headers or {}), "WWW-Authenticate": "Bearer"},
    )


def handle_dependency_down(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    name = "redis" if isinstance(exc, RedisError) else "database"
    logger.warning(
        "%s unavailable on %s %s: %s",
        name,
        request.method,
        request.url.path,
        describe_error(exc),
        extra=error_fields(exc),
    )
    return error_response(
        HTTP_503_SERVICE_UNAVAILABLE,
        f"{name} temporarily unavailable, retry shortly",
        headers={"Retry-After": "5"},
    )


# SQLSTATE classes that say "the database cannot serve this now", not "this request is wrong":
# 08 connection, 40 rollback (serialization, deadlock), 53 resources, 57 cancelled (a
# statement timeout) or shutting down.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")


def handle_database_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """A transient SQLSTATE, or a lost link SQLAlchemy does not call OperationalError."""
    sqlstate = error_fields(exc).get("sqlstate") or ""
    if sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES) or is_connection_lost(exc):
        return handle_dependency_down(request, exc)
    return handle_unexpected(request, exc)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    # The stack without the messages: where it failed, not what values it failed on.
    logger.error(
        "unhandled error on %s %s: %s",
        request.method,
        request.url.path,
        describe_error(exc),
        extra={**error_fields(exc), "stack": "".join(traceback.format_tb(exc.__traceback__))},
    )
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal server error")


def handle_bcrypt_busy(request: Request[Any, Any, Any], _exc: BcryptBusy) -> Response[ErrorBody]:
    """The password threads are full: 503, try again in a moment (like any HTTP 503)."""
    busy = HTTPException(
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        detail="too many logins in progress, retry shortly",
        headers={"Retry-After": str(BCRYPT_BUSY_RETRY_AFTER_S)},
    )
    return handle_http(request, busy)


exception_handlers: ExceptionHandlersMap = {
    BcryptBusy: handle_bcrypt_busy,
    ValidationException: handle_validation,
    NotAuthorizedException: handle_unauthorized,
    HTTPException: handle_http,
    OperationalError: handle_dependency_down,
    InterfaceError: handle_dependency_down,
    PoolTimeoutError: handle_dependency_down,
    OSError: handle_dependency_down,
    DBAPIError: handle_database_error,
    asyncpg.InterfaceError: handle_database_error,
    asyncpg.PostgresConnectionError: handle_database_error,
    RedisError: handle_dependency_down,
    Exception: handle_unexpected,
}


_DESCRIPTIONS = {
    401: "missing, invalid or expired token, or wrong credentials",
    403: "not yours",
    404: "not found",
    409: "conflict",
    413: "request body too large",
    415: "the body is not sent as application/json",
    422: "the request does not validate",
    429: "rate limited; see Retry-After",
    503: "a dependency is unavailable; see Retry-After",
}


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses a route can answer with.

    No generated examples: Litestar would invent random ones (``"status_code": 9361``), which
    mislead readers of the docs and make the schema differ between two builds of the app.
    """
    return {
        code: ResponseSpec(
            data_container=ErrorBody, description=_DESCRIPTIONS[code], generate_examples=False
        )
        for code in codes
    }
