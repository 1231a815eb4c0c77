"""Prometheus metrics: the registry's counters that more than one module counts, and the
workers' own HTTP endpoint.

The consumer and the worker serve their own counters on ``CONSUMER_METRICS_PORT`` and
``WORKER_METRICS_PORT``; the API's request counters and /metrics are ``shared.http.metrics``
(counted per process, flushed off the request path).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, start_http_server

logger = logging.getLogger(__name__)


# The worker's and the consumer's processes serve their own counters on their own ports
# (``serve_metrics``); each counter is defined beside the one code that counts it, but for
# this one, which the job and the job format (``shared.messaging.jobs``, refusing) both count.
JOBS = Counter(
    "orders_worker_jobs_total",
    "process_order runs, by outcome",
    ["outcome"],  # processed | already_processed | missing | retried | failed | refused
)


def serve_metrics(port: int, host: str) -> None:
    """Expose this process's metrics over HTTP for Prometheus; port 0 means don't.

    Unauthenticated, so on ``host`` only (METRICS_HOST, loopback by default), never every
    interface unasked. A taken port (a second worker on one host) costs the metrics, not the
    process.
    """
    if not port:
        return
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        logger.warning("metrics not served on %s:%s: %s", host, port, exc)
