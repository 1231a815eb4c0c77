"""The request tally and its hand-over to Prometheus: what /metrics shows after a flush is what
prometheus_client's own observe() and inc() would have shown (no services)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from shared.http.metrics import APP_NAME, BUCKETS, LABELS, PREFIX, PrometheusSeries, RequestTally

REQUESTS = [
    ("GET", "/orders/{order_id:uuid}", 200, 0.004),
    ("GET", "/orders/{order_id:uuid}", 200, 0.005),  # a bucket's bound itself
    ("GET", "/orders/{order_id:uuid}", 404, 0.02),
    ("POST", "/orders", 201, 0.3),
    ("POST", "/orders", 503, 12.0),  # beyond the last bound: +Inf
]


def observed_one_at_a_time() -> bytes:
    registry = CollectorRegistry()
    requests = Counter(f"{PREFIX}_requests_total", "Total requests", LABELS, registry=registry)
    errors = Counter(
        f"{PREFIX}_requests_error_total", "Total errors in requests", LABELS, registry=registry
    )
    duration = Histogram(
        f"{PREFIX}_request_duration_seconds",
        "Request duration, in seconds",
        LABELS,
        buckets=BUCKETS,
        registry=registry,
    )
    for method, path, status, seconds in REQUESTS:
        labels = (method, path, str(status), APP_NAME)
        requests.labels(*labels).inc()
        if status >= 500:
            errors.labels(*labels).inc()
        duration.labels(*labels).observe(seconds)
    return generate_latest(registry)


def without_in_progress(exposition: bytes) -> list[bytes]:
    """The lines to compare: not the gauge (the other test's), not the creation times."""
    return [
        line
        for line in exposition.splitlines()
        if b"in_progress" not in line and b"_created" not in line
    ]


def test_a_flushed_tally_shows_what_observing_each_request_would() -> None:
    tally = RequestTally()
    for method, path, _, _ in REQUESTS:
        tally.start(method, path)
    for method, path, status, seconds in REQUESTS:
        tally.record(method, path, status, seconds)
    registry = CollectorRegistry()
    series = PrometheusSeries(registry)
    series.add(tally)
    assert without_in_progress(generate_latest(registry)) == without_in_progress(
        observed_one_at_a_time()
    )
    series.add(tally)  # taken already: a second flush adds nothing
    assert without_in_progress(generate_latest(registry)) == without_in_progress(
        observed_one_at_a_time()
    )


def test_requests_in_progress_are_shown_per_route_and_go_back_to_zero() -> None:
    tally = RequestTally()
    registry = CollectorRegistry()
    series = PrometheusSeries(registry)
    tally.start("GET", "/orders")
    tally.start("GET", "/orders")
    series.add(tally)
    labels = {"method": "GET", "path": "/orders", "status_code": "200", "app_name": APP_NAME}
    gauge = f"{PREFIX}_requests_in_progress"
    assert registry.get_sample_value(gauge, labels) == 2
    tally.record("GET", "/orders", 200, 0.01)
    tally.record("GET", "/orders", 200, 0.01)
    series.add(tally)
    assert registry.get_sample_value(gauge, labels) == 0
