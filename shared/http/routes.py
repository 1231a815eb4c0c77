"""What routes declare once: the ops paths, and the marker of a route anyone may call.

The ops paths (liveness, readiness, metrics, the docs) are read by the auth middleware, the
rate limiter and the Prometheus middleware alike, through ``ops_path_patterns``: none of the
three asks a token of them, counts them or records them.
"""

from __future__ import annotations

import re
from typing import Any

HEALTH_PATH = "/health"
READY_PATH = "/ready"
METRICS_PATH = "/metrics"
DOCS_PATH = "/schema"
OPS_PATHS = (HEALTH_PATH, READY_PATH, METRICS_PATH, DOCS_PATH)


def ops_path_patterns() -> list[str]:
    """Litestar's ``exclude`` regexes for the ops paths: each one and everything under it."""
    return [f"^{re.escape(path)}" for path in OPS_PATHS]


def public() -> dict[str, Any]:
    """Route decorator arguments for a route that needs no token: ``@post(path, **public())``.

    ``security=[{}]`` is how Litestar keeps a route from inheriting the app-wide bearer
    requirement; the document says it as OpenAPI's ``security: []`` (``shared.http.openapi``),
    so the docs, Swagger's Authorize button and generated clients ask no token for it.
    """
    return {"exclude_from_auth": True, "security": [{}]}
