"""The API's request metrics: counted per process in plain dicts, handed to Prometheus off the
request path.

A request pays a dict increment (``RequestTally.record``), not prometheus_client's calls:
in multi-process mode each of those is a write to an mmap'd file under a lock, four or five
per request (11 % of a cached GET in BENCHMARKS.md's profile). ``flush_every`` hands what was
counted to the Prometheus objects twice a second, and /metrics flushes its own process before
it reads, so /metrics is exact to within half a second.

The series are those Litestar's Prometheus plugin wrote (same names, labels and buckets):
``orders_api_requests_total``, ``orders_api_request_duration_seconds``,
``orders_api_requests_in_progress`` and ``orders_api_requests_error_total`` (5xx), by
``method``, ``path`` (the route template: bounded cardinality), ``status_code`` and
``app_name``. The ops paths are not counted.

/metrics on the API port is for the scraper only: it answers to
``Authorization: Bearer <METRICS_TOKEN>`` and is a 404 for everyone when no token is set
(what it shows, traffic per route, is not for anonymous eyes). With several API processes
(``uvicorn --workers``) set ``PROMETHEUS_MULTIPROC_DIR`` (the justfile and the image do) and
/metrics adds them up.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from litestar import Controller, Response, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.handlers.base import BaseRouteHandler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from shared.http.routes import METRICS_PATH
from shared.services import services_of

logger = logging.getLogger(__name__)

APP_NAME = "order_service"
PREFIX = "orders_api"
LABELS = ("method", "path", "status_code", "app_name")
BUCKETS = Histogram.DEFAULT_BUCKETS  # what the plugin used; ends with +Inf
FLUSH_INTERVAL_S = 0.5

Series = tuple[str, str, int]  # method, route template, status


@dataclass
class Tallies:
    """One series' counts since the last flush: requests, seconds, and per bucket."""

    count: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))


class RequestTally:
    """This process's request counts since the last ``take``: plain Python, no lock (one event
    loop per process), no file."""

    def __init__(self) -> None:
        self.in_progress: dict[tuple[str, str], int] = {}  # by method and route template
        self._series: dict[Series, Tallies] = {}

    def start(self, method: str, path: str) -> None:
        """A request began (``record`` ends it)."""
        self.in_progress[method, path] = self.in_progress.get((method, path), 0) + 1

    def record(self, method: str, path: str, status: int, seconds: float) -> None:
        """A request ended with ``status`` after ``seconds``."""
        self.in_progress[method, path] -= 1
        tallies = self._series.get((method, path, status))
        if tallies is None:
            tallies = self._series[(method, path, status)] = Tallies()
        tallies.count += 1
        tallies.seconds += seconds
        # Prometheus's rule: the first bucket whose upper bound is at least the value.
        tallies.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1

    def take(self) -> dict[Series, Tallies]:
        """What was counted since the last call; counting starts again from nothing."""
        taken, self._series = self._series, {}
        return taken


TALLY = RequestTally()  # per process, as prometheus_client's registry is


class PrometheusSeries:
    """The Prometheus objects the tallies are handed to (created once per process)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(
            f"{PREFIX}_requests_total", "Total requests", LABELS, registry=registry
        )
        self.errors = Counter(
            f"{PREFIX}_requests_error_total", "Total errors in requests", LABELS, registry=registry
        )
        self.duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Request duration, in seconds",
            LABELS,
            buckets=BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            f"{PREFIX}_requests_in_progress",
            "Total requests currently in progress",
            LABELS,  # status_code "200" always, as the plugin wrote it
            multiprocess_mode="livesum",
            registry=registry,
        )

    def add(self, tally: RequestTally) -> None:
        """Hand over what ``tally`` counted since the last time."""
        for (method, path, status), tallies in tally.take().items():
            labels = (method, path, str(status), APP_NAME)
            self.requests.labels(*labels).inc(tallies.count)
            if status >= 500:
                self.errors.labels(*labels).inc(tallies.count)
            histogram = self.duration.labels(*labels)
            # prometheus_client adds one observation at a time; these are its own fields.
            histogram._sum.inc(tallies.seconds)
            for index, hits in enumerate(tallies.buckets):
                if hits:
                    histogram._buckets[index].inc(hits)
        for (method, path), running in tally.in_progress.items():
            self.in_progress.labels(method, path, "200", APP_NAME).set(running)


_series: PrometheusSeries | None = None


def flush(tally: RequestTally = TALLY) -> None:
    global _series  # noqa: PLW0603 - one set of series per process, made on first use
    if _series is None:
        _series = PrometheusSeries()
    _series.add(tally)


async def flush_every(interval_s: float = FLUSH_INTERVAL_S, tally: RequestTally = TALLY) -> None:
    """Flush ``tally`` until cancelled, and once more then: the app's lifespan runs it."""
    try:
        while True:
            await asyncio.sleep(interval_s)
            flush(tally)
    finally:
        flush(tally)


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


class MetricsController(Controller):
    """For the scraper: its own token (not a user's), no rate limit (an ops path)."""

    path = METRICS_PATH
    guards = [metrics_guard]  # noqa: RUF012 - Litestar's own field
    include_in_schema = False

    @get(sync_to_thread=False)
    def metrics(self) -> Response[bytes]:
        flush()  # this process exactly; the others within FLUSH_INTERVAL_S
        registry = REGISTRY
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
