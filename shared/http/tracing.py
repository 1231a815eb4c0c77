"""The API's server spans (Litestar's OpenTelemetry plugin), only when tracing is on.

The plugin's middleware wraps the whole app, so it names a span before routing: here the
span starts as the method alone and, when the answer starts, ``describe_server_span`` (a
``before_send`` hook) names it by its route template and adds the template, and the caller's
user id, as attributes: one span name per route, never one per order id. Probes and
/metrics make no spans.
"""

from __future__ import annotations

from typing import Any

from litestar.plugins import PluginProtocol
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.types import BeforeMessageSendHookHandler, Message, Scope
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

UNTRACED_PATHS = ["^/health$", "^/ready$", "^/metrics$"]


def _method_only(scope: Any) -> tuple[str, dict[str, str]]:
    return str(scope.get("method", scope.get("type", ""))), {}


async def describe_server_span(message: Message, scope: Scope) -> None:
    """Name the server span by its route template; add the route and the user id."""
    if message["type"] != "http.response.start":
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    template = scope.get("path_template")
    if template:
        span.update_name(f"{scope.get('method', '')} {template}")
        span.set_attribute("http.route", template)
    user = scope.get("user")
    user_id = getattr(user, "id", None)
    if user_id is not None:
        span.set_attribute("enduser.id", str(user_id))


def server_tracing(
    provider: TracerProvider | None,
) -> tuple[list[PluginProtocol], list[BeforeMessageSendHookHandler]]:
    """The plugin and the hook for ``Litestar(...)``; nothing at all when tracing is off."""
    if provider is None:
        return [], []
    config = OpenTelemetryConfig(
        tracer_provider=provider,
        scope_span_details_extractor=_method_only,
        exclude=UNTRACED_PATHS,
        exclude_spans=["receive", "send"],
    )
    return [OpenTelemetryPlugin(config)], [describe_server_span]
