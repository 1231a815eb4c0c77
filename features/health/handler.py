"""GET /health (the process is up) and GET /ready (its dependencies answer), for orchestrators.

Both are public and unlimited, so /ready must be cheap whatever the traffic: it answers from
a result at most ``READY_MAX_AGE_S`` old, and while a probe runs every caller waits for that
one. A flood of /ready costs at most one pooled PostgreSQL connection at a time, and order
requests keep theirs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from redis.asyncio import Redis
from sqlalchemy import text

from shared.db import Database
from shared.http.openapi import documented
from shared.http.routes import HEALTH_PATH, READY_PATH, public
from shared.messaging.bus import EventBus

READINESS = "readiness"  # the name GET /ready takes its probe by
CHECK_TIMEOUT_S = 2.0
READY_MAX_AGE_S = 1.0
READY_EXAMPLE = {"status": "ok", "checks": {"postgresql": "ok", "redis": "ok", "rabbitmq": "ok"}}


class Health(msgspec.Struct, frozen=True):
    status: str


class Readiness(msgspec.Struct, frozen=True, omit_defaults=True):
    status: str
    checks: dict[str, str]
    detail: str | None = None


@get(
    HEALTH_PATH,
    operation_id="health",
    **public(),
    operation_class=documented(answer={"status": "ok"}),
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


async def _postgres(db: Database) -> None:
    async with db.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _rabbitmq(bus: EventBus) -> None:
    if not bus.ready:
        raise ConnectionError("not connected")


class ReadinessProbe:
    """One probe at a time per process, its result shared for ``READY_MAX_AGE_S``.

    The app builds one and provides it to GET /ready by name (``READINESS``).
    """

    def __init__(self, db: Database, redis: Redis, bus: EventBus) -> None:
        self._db = db
        self._redis = redis
        self._bus = bus
        self._result: dict[str, str] | None = None
        self._taken_at = 0.0
        self._running: asyncio.Task[dict[str, str]] | None = None

    async def results(self) -> dict[str, str]:
        if self._result is not None and time.monotonic() - self._taken_at <= READY_MAX_AGE_S:
            return self._result
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._probe())
        return await asyncio.shield(self._running)  # one caller leaving does not cancel it

    async def _probe(self) -> dict[str, str]:
        results = dict(
            await asyncio.gather(
                _check("postgresql", _postgres(self._db)),
                _check("redis", self._redis.ping()),
                _check("rabbitmq", _rabbitmq(self._bus)),
            )
        )
        self._result, self._taken_at = results, time.monotonic()
        return results


@get(
    READY_PATH,
    operation_id="ready",
    **public(),
    operation_class=documented(answer=READY_EXAMPLE),
    tags=["ops"],
    summary="Readiness",
    responses={503: ResponseSpec(Readiness, description="a dependency is down; `detail` names it")},
)
async def ready(readiness: NamedDependency[ReadinessProbe]) -> Response[Readiness]:
    results = await readiness.results()
    down = [name for name, result in results.items() if result != "ok"]
    if down:
        body = Readiness(status="unavailable", checks=results, detail=f"down: {', '.join(down)}")
        return Response(body, status_code=HTTP_503_SERVICE_UNAVAILABLE)
    return Response(Readiness(status="ok", checks=results), status_code=HTTP_200_OK)
