"""OpenTelemetry tracing: one trace per order, from POST /orders to the worker's job.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` is not): then no
provider is made, no instrumentation is installed, the API gets no tracing middleware, and
every helper here answers ``None`` or a ``nullcontext`` after one module-level check, so a
request pays nothing for it. On, each process (``start_tracing``) builds its
``TracerProvider`` from ``Settings`` (never from ``os.environ``: ``.env`` works too) and
exports over OTLP/HTTP from a background thread (``BatchSpanProcessor``): an unreachable or
stalled collector loses spans, never blocks a request or a job.

The pipeline's hops carry the W3C context (``traceparent``/``tracestate``) themselves, since no
instrumentation library knows them: the outbox row (its ``trace_context`` column), the AMQP
message's headers, the arq job's ``trace_context`` argument. ``carrier`` writes the current
context into such a dict; ``span`` starts a span under one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from shared.settings import Settings

logger = logging.getLogger(__name__)

Carrier = dict[str, str]
# The per-process default names (OTEL_SERVICE_NAME overrides them).
API, CONSUMER, WORKER = "order-api", "order-consumer", "order-worker"

_tracer = trace.get_tracer("order-service")  # a proxy: real once a provider is set
# The pipeline's own hops (outbox, headers, jobs) carry W3C context through this one; the
# global propagator, which the HTTP instrumentation reads clients' headers with, carries none.
_W3C = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


class Unbelieved(TextMapPropagator):
    """The global propagator: reads no context from a caller's headers, writes none."""

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        return context if context is not None else Context()

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        return None

    @property
    def fields(self) -> set[str]:
        return set()


def enabled() -> bool:
    return _provider is not None


class NoOrphanClients(Sampler):
    """``root``'s decision, except that a client span (a SQL statement, a Redis command)
    with no parent is dropped: the worker's arq polls and the crons' bookkeeping would
    otherwise each make a trace of one span, ten a second, burying the orders' traces."""

    def __init__(self, root: Sampler) -> None:
        self._root = root

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        return self._root.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoOrphanClients{{{self._root.get_description()}}}"


def sampler(name: str, arg: float) -> Sampler:
    """``OTEL_TRACES_SAMPLER`` (+ ``_ARG``, the ratio) as the SDK reads it, orphan clients
    dropped (``NoOrphanClients``). ``parentbased_*`` follows the caller's decision, so an
    order's trace is whole or absent in every process."""
    ratio = TraceIdRatioBased(arg)
    roots: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(ratio),
    }
    return NoOrphanClients(roots[name])


def traces_url(endpoint: str) -> str:
    """``OTEL_EXPORTER_OTLP_ENDPOINT`` is the collector's base URL; traces go to /v1/traces."""
    return endpoint.rstrip("/") + "/v1/traces"


def start_tracing(settings: Settings, service: str) -> TracerProvider | None:
    """This process's provider, exporting to the configured collector; None when tracing is
    off. Installs the SQLAlchemy-free parts (Redis); ``trace_engine`` adds an engine's."""
    global _provider  # noqa: PLW0603 - one provider per process, as OpenTelemetry's global
    if _provider is not None:
        return _provider
    if settings.otel_sdk_disabled or not settings.otel_exporter_otlp_endpoint:
        return None
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.otel_service_name or service}),
        sampler=sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg),
    )
    exporter = OTLPSpanExporter(endpoint=traces_url(settings.otel_exporter_otlp_endpoint))
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=settings.otel_bsp_schedule_delay)
    )
    trace.set_tracer_provider(provider)
    # Every request starts a trace of its own: a client's `traceparent` is not believed, so no
    # caller picks our trace ids, joins another's trace or decides what we sample.
    propagate.set_global_textmap(Unbelieved())
    RedisInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    logger.info(
        "tracing to %s as %s",
        traces_url(settings.otel_exporter_otlp_endpoint),
        settings.otel_service_name or service,
    )
    return provider


def trace_engine(engine: Any) -> None:
    """Client spans for the statements of ``engine`` (an ``AsyncEngine``), when tracing is on."""
    if _provider is None:
        return
    # Its declared range stops below SQLAlchemy 2.1, which only added to the engine events it
    # listens to; tests/workers/test_tracing.py checks the statements' spans on ours.
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=_provider, skip_dep_check=True
    )


def carrier() -> Carrier | None:
    """The current span's context as W3C headers; None when tracing is off or no span is
    current (nothing to continue)."""
    if _provider is None:
        return None
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    headers: Carrier = {}
    _W3C.inject(headers)
    return headers or None


def trace_headers(headers: Mapping[str, Any] | None) -> Carrier | None:
    """The W3C entries of a message's ``headers``, as text; None if it has none."""
    if not headers:
        return None
    found = {k: _text(v) for k, v in headers.items() if k in ("traceparent", "tracestate")}
    return found or None


def _context(parent: Mapping[str, Any] | None) -> Context | None:
    if not parent:
        return None
    return _W3C.extract(trace_headers(parent) or {})


def _text(value: Any) -> str:
    """An AMQP header's value as text (a broker may hand strings back as bytes)."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def link_to(parent: Mapping[str, Any] | None) -> list[Link]:
    """A link to the span ``parent`` names (none if it names none)."""
    span_context = trace.get_current_span(_context(parent)).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Mapping[str, Any] | None = None,
    links: Sequence[Link] = (),
    attributes: Attributes = None,
) -> AbstractContextManager[trace.Span | None]:
    """A current span under ``parent`` (a carrier; None: the current context), or, tracing
    off, a ``nullcontext``."""
    if _provider is None:
        return nullcontext()
    return _started(name, kind, _context(parent), links, attributes)


@contextmanager
def _started(
    name: str,
    kind: SpanKind,
    context: Context | None,
    links: Sequence[Link],
    attributes: Attributes,
) -> Iterator[trace.Span]:
    with _tracer.start_as_current_span(
        name, context=context, kind=kind, links=links, attributes=attributes
    ) as current:
        yield current


def current_ids() -> tuple[str, str] | None:
    """The current span's trace and span ids in hex (what a log line carries), if any."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
