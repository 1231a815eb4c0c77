"""GET /health (the process is up) and GET /ready (its dependencies answer), for orchestrators."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

CHECK_TIMEOUT_S = 2.0


class Health(msgspec.Struct, frozen=True):
    status: str


class Readiness(msgspec.Struct, frozen=True, omit_defaults=True):
    status: str
    checks: dict[str, str]
    detail: str | None = None


# `security=[{}]`: OpenAPI's "no credentials needed"; the app-wide default is the bearer token.
@get(
    "/health",
    exclude_from_auth=True,
    security=[{}],
    tags=["ops"],
    summary="Liveness",
    cache_control=None,
)
async def health() -> Health:
    return Health(status="ok")


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure is "down"; the reason is reported
        return name, f"down: {type(exc).__name__}"
    return name, "ok"


async def _postgres(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _rabbitmq(state: State) -> None:
    if not state.bus.ready:
        raise ConnectionError("not connected")


@get(
    "/ready",
    exclude_from_auth=True,
    security=[{}],
    tags=["ops"],
    summary="Readiness",
    responses={503: ResponseSpec(Readiness, description="a dependency is down; `detail` names it")},
)
async def ready(state: State, db_engine: NamedDependency[AsyncEngine]) -> Response[Readiness]:
    results = dict(
        await asyncio.gather(
            _check("postgresql", _postgres(db_engine)),
            _check("redis", state.redis.ping()),
            _check("rabbitmq", _rabbitmq(state)),
        )
    )
    down = [name for name, result in results.items() if result != "ok"]
    if down:
        body = Readiness(status="unavailable", checks=results, detail=f"down: {', '.join(down)}")
        return Response(body, status_code=HTTP_503_SERVICE_UNAVAILABLE)
    return Response(Readiness(status="ok", checks=results), status_code=HTTP_200_OK)
