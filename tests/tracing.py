"""What the processes export, decoded as a collector would.

``Collector`` receives ``POST /v1/traces`` (``tools.harness.otlp``), decodes each
``ExportTraceServiceRequest`` with ``opentelemetry-proto`` and keeps its spans, flattened
with their process's ``service.name``. ``Stall`` is a port that accepts and never answers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from tests.pipeline import wait_for
from tools.harness.otlp import OtlpReceiver

KINDS = {
    SpanProto.SPAN_KIND_INTERNAL: "internal",
    SpanProto.SPAN_KIND_SERVER: "server",
    SpanProto.SPAN_KIND_CLIENT: "client",
    SpanProto.SPAN_KIND_PRODUCER: "producer",
    SpanProto.SPAN_KIND_CONSUMER: "consumer",
}


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    attributes: dict[str, Any]
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace id, span id)


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[Span] = []
    for resource_spans in request.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name"))
        for scope_spans in resource_spans.scope_spans:
            spans.extend(
                Span(
                    service=service,
                    name=span.name,
                    kind=KINDS.get(span.kind, "unspecified"),
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex(),
                    attributes=_attributes(span.attributes),
                    links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                )
                for span in scope_spans.spans
            )
    return spans


class Collector:
    """The receiver (``tools.harness.otlp``) keeping what it is sent, decoded; ``url`` is
    what OTEL_EXPORTER_OTLP_ENDPOINT names."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self._receiver = OtlpReceiver(self._took)
        self.url = self._receiver.url

    def _took(self, body: bytes) -> None:
        self.requests += 1
        self.spans.extend(decode(body))

    def close(self) -> None:
        self._receiver.close()

    def trace(self, trace_id: str) -> list[Span]:
        return [span for span in self.spans if span.trace_id == trace_id]

    async def span_where(
        self,
        name: str,
        *,
        service: str | None = None,
        order_id: str | None = None,
        within: float = 20.0,
    ) -> Span:
        """The first span named ``name`` (of ``service``, about ``order_id``), once exported."""

        async def found() -> Span | None:
            for span in list(self.spans):
                if (
                    span.name == name
                    and service in (None, span.service)
                    and order_id in (None, span.attributes.get("order.id"))
                ):
                    return span
            return None

        span: Span = await wait_for(found, within=within)
        return span


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    yield receiver
    receiver.close()


class Stall:
    """A port that accepts connections and never answers (a collector hung mid-request)."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)  # the kernel completes the handshakes; nobody reads
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def close(self) -> None:
        self._socket.close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
