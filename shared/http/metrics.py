"""Prometheus metrics through Litestar's own plugin: request counts and latencies per route.

/metrics on the API port is for the scraper only: it answers to
``Authorization: Bearer <METRICS_TOKEN>`` and is a 404 for everyone when no token is set
(what it shows, traffic per route, is not for anonymous eyes).

With several API processes (``uvicorn --workers``) each keeps its own counters; set
``PROMETHEUS_MULTIPROC_DIR`` (the justfile and the image do) and /metrics aggregates them.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.plugins.prometheus import (
    PrometheusConfig,
    PrometheusController,
    PrometheusMiddleware,
)
from litestar.types import ASGIApp, Receive, Scope, Send

from shared.http.routes import METRICS_PATH, ops_path_patterns
from shared.services import services_of


def metrics_guard(
    connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler
) -> None:
    """Only the holder of METRICS_TOKEN reads /metrics; without a token set, nobody does."""
    expected = services_of(connection.app).settings.metrics_token
    if not expected:
        raise NotFoundException()
    scheme, _, sent = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        sent.strip().encode(), expected.encode()
    ):
        raise NotAuthorizedException("metrics need the metrics token")


class MetricsController(PrometheusController):
    """For the scraper: its own token (not a user's), no rate limit (an ops path)."""

    path = METRICS_PATH
    guards = [metrics_guard]  # noqa: RUF012 - Litestar's own field
    include_in_schema = False


class StatusAwarePrometheusMiddleware(PrometheusMiddleware):
    """Counts a 401/429 raised by an inner middleware with its real status.

    Litestar's own middleware records 200 for those: the exception passes through it before
    the outer exception handler turns it into a response.
    """

    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        super().__init__(app, config)
        inner = self.app

        async def recording(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await inner(scope, receive, send)
            except Exception as exc:
                span = getattr(send, "request_span", None)
                if span is not None:
                    span["status_code"] = getattr(exc, "status_code", 500)
                raise

        self.app = recording

    def _get_wrapped_send(self, send: Send, request_span: dict[str, float]) -> Callable[..., Any]:
        wrapped = super()._get_wrapped_send(send, request_span)
        wrapped.request_span = request_span  # type: ignore[attr-defined]
        return wrapped


def prometheus_config() -> PrometheusConfig:
    return PrometheusConfig(
        app_name="order_service",
        prefix="orders_api",
        group_path=True,  # label by route template, not by order id: bounded cardinality
        exclude=ops_path_patterns(),
        middleware_class=StatusAwarePrometheusMiddleware,
    )
