"""shared.tracing's pure parts: the sampler read from settings, the collector's URL, the W3C
headers as a message carries them, and what every helper does while tracing is off."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from shared import tracing
from shared.settings import load_settings

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"


def _parent(sampled: bool = True) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    context = SpanContext(TRACE_ID, SPAN_ID, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(context))


def _decision(
    sampler_name: str, kind: SpanKind, parent: Context | None = None, arg: float = 1.0
) -> Decision:
    sampler = tracing.sampler(sampler_name, arg)
    return sampler.should_sample(parent, TRACE_ID, "name", kind).decision


def test_orphan_client_spans_are_dropped_whatever_the_sampler() -> None:
    """A SQL statement or Redis command outside any trace (the worker's polls) makes no trace."""
    for name in ("always_on", "parentbased_always_on", "traceidratio"):
        assert _decision(name, SpanKind.CLIENT) is Decision.DROP
        assert _decision(name, SpanKind.SERVER) is Decision.RECORD_AND_SAMPLE


def test_client_spans_inside_a_trace_follow_the_parent() -> None:
    assert _decision("parentbased_always_on", SpanKind.CLIENT, _parent()) is (
        Decision.RECORD_AND_SAMPLE
    )
    assert _decision("parentbased_always_on", SpanKind.CLIENT, _parent(sampled=False)) is (
        Decision.DROP
    )


def test_samplers_by_their_standard_names() -> None:
    assert _decision("always_off", SpanKind.SERVER) is Decision.DROP
    assert _decision("parentbased_always_off", SpanKind.SERVER) is Decision.DROP
    assert _decision("parentbased_always_off", SpanKind.CONSUMER, _parent()) is (
        Decision.RECORD_AND_SAMPLE
    )
    assert _decision("parentbased_traceidratio", SpanKind.SERVER, arg=0.0) is Decision.DROP
    assert _decision("traceidratio", SpanKind.SERVER, arg=1.0) is Decision.RECORD_AND_SAMPLE


def test_settings_read_the_standard_variables() -> None:
    settings = load_settings(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_SERVICE_NAME": "orders-eu",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
            "OTEL_SDK_DISABLED": "true",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
        env_file=None,
    )
    assert settings.otel_service_name == "orders-eu"
    assert settings.otel_traces_sampler_arg == 0.25
    assert settings.otel_sdk_disabled is True
    assert settings.otel_bsp_schedule_delay == 200
    assert tracing.traces_url(settings.otel_exporter_otlp_endpoint) == (
        "http://collector:4318/v1/traces"
    )
    # Disabled wins over an endpoint: no provider.
    assert tracing.start_tracing(settings, tracing.API) is None
    assert not tracing.enabled()


@pytest.mark.parametrize(
    ("name", "value"),
    [("OTEL_TRACES_SAMPLER", "sometimes"), ("OTEL_TRACES_SAMPLER_ARG", "2")],
)
def test_bad_sampler_settings_stop_start_up(name: str, value: str) -> None:
    with pytest.raises(SystemExit, match="invalid settings"):
        load_settings({name: value}, env_file=None)


def test_message_headers_as_a_carrier() -> None:
    """AMQP may hand strings back as bytes; other headers are not trace context."""
    headers = {"traceparent": TRACEPARENT.encode(), "tracestate": "k=v", "x-other": 1}
    assert tracing.trace_headers(headers) == {"traceparent": TRACEPARENT, "tracestate": "k=v"}
    assert tracing.trace_headers({"x-other": 1}) is None
    assert tracing.trace_headers(None) is None
    [link] = tracing.link_to(headers)
    assert (link.context.trace_id, link.context.span_id) == (TRACE_ID, SPAN_ID)
    assert tracing.link_to(None) == []
    assert tracing.link_to({"traceparent": "garbage"}) == []


def test_tracing_off_costs_a_check_and_nothing_else() -> None:
    """No endpoint: no provider, no carrier even inside a valid span, spans are no-ops."""
    assert tracing.start_tracing(load_settings({}, env_file=None), tracing.API) is None
    with trace.use_span(NonRecordingSpan(_parent_context())):
        assert tracing.carrier() is None
        assert tracing.current_ids() == (f"{TRACE_ID:032x}", f"{SPAN_ID:016x}")
    made = tracing.span("x", parent={"traceparent": TRACEPARENT})
    assert isinstance(made, nullcontext)


def _parent_context() -> SpanContext:
    return SpanContext(TRACE_ID, SPAN_ID, is_remote=True, trace_flags=TraceFlags(1))


def test_callers_headers_carry_no_context_into_a_trace() -> None:
    """The global propagator (what the HTTP instrumentation reads) believes no traceparent,
    and answers an empty context, never None (attaching None breaks every later span)."""
    unbelieved = tracing.Unbelieved()
    extracted = unbelieved.extract({"traceparent": TRACEPARENT})
    assert extracted is not None
    assert not trace.get_current_span(extracted).get_span_context().is_valid
    headers: dict[str, str] = {}
    unbelieved.inject(headers)
    assert headers == {}
    assert unbelieved.fields == set()
