"""build_propagator: names, order, the no-op, configuration errors, guarded members, round trips."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context.context import Context
from opentelemetry.propagators import textmap
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.propagators.jaeger import JaegerPropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanContext

from veil import _guard
from veil.errors import ConfigurationError
from veil.propagation import (
    PROPAGATOR_NAMES,
    GuardedCompositePropagator,
    TraceContextPropagator,
    build_propagator,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def members(propagator: textmap.TextMapPropagator) -> list[type]:
    assert isinstance(propagator, GuardedCompositePropagator)
    return [type(member) for member in propagator.propagators]


@pytest.fixture
def tracer() -> Iterator[trace.Tracer]:
    provider = TracerProvider()
    yield provider.get_tracer("tests.propagation")
    provider.shutdown()


def test_names() -> None:
    assert PROPAGATOR_NAMES == ("tracecontext", "baggage", "b3", "b3multi", "jaeger", "none")


def test_each_name_maps_to_its_propagator() -> None:
    assert members(build_propagator(["tracecontext"])) == [TraceContextPropagator]
    assert members(build_propagator(["baggage"])) == [W3CBaggagePropagator]
    assert members(build_propagator(["b3"])) == [B3SingleFormat]
    assert members(build_propagator(["b3multi"])) == [B3MultiFormat]
    assert members(build_propagator(["jaeger"])) == [JaegerPropagator]


def test_order_is_preserved_and_duplicates_ignored() -> None:
    built = build_propagator(["jaeger", "tracecontext", "b3", "jaeger", " TraceContext ", "", "baggage"])
    assert members(built) == [JaegerPropagator, TraceContextPropagator, B3SingleFormat, W3CBaggagePropagator]


def test_a_comma_separated_string_is_accepted() -> None:
    assert members(build_propagator("tracecontext, baggage")) == [
        TraceContextPropagator,
        W3CBaggagePropagator,
    ]


@pytest.mark.parametrize("names", [["none"], [" None "], [], ["none", "none"]])
def test_none_is_a_no_op(names: list[str]) -> None:
    built = build_propagator(names)
    assert members(built) == []
    carrier: dict[str, str] = {}
    span = trace.NonRecordingSpan(SpanContext(1, 1, is_remote=False))
    built.inject(carrier, trace.set_span_in_context(span))
    assert carrier == {}
    assert built.extract({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"}) == Context()
    start = baggage.set_baggage("k", "v")
    assert built.extract({}, start) is start
    assert built.fields == set()


def test_unknown_name_raises_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as raised:
        build_propagator(["tracecontext", "xray"])
    error = raised.value
    assert error.variable == "OTEL_PROPAGATORS"
    assert error.value == "tracecontext,xray"
    assert str(error) == (
        "OTEL_PROPAGATORS='tracecontext,xray' is invalid (unknown propagator 'xray'); "
        "accepted: b3, b3multi, baggage, jaeger, none, tracecontext"
    )


def test_none_combined_with_others_raises() -> None:
    with pytest.raises(ConfigurationError, match="'none' disables propagation"):
        build_propagator(["tracecontext", "none"])


def test_fields_are_the_union() -> None:
    built = build_propagator(["tracecontext", "baggage", "b3", "b3multi", "jaeger"])
    assert {"traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "uber-trace-id"} <= built.fields


def test_later_propagator_wins_on_extract() -> None:
    carrier = {
        "traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01",
        "b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
    }
    first = trace.get_current_span(build_propagator(["b3", "tracecontext"]).extract(carrier))
    second = trace.get_current_span(build_propagator(["tracecontext", "b3"]).extract(carrier))
    assert f"{first.get_span_context().trace_id:032x}" == TRACE_ID
    assert f"{second.get_span_context().trace_id:032x}" == "80f198ee56343ba864fe8b2a57d3eff7"


def test_a_raising_member_does_not_break_the_others(caplog: pytest.LogCaptureFixture) -> None:
    _guard.reset_for_tests()
    built = build_propagator(["b3", "tracecontext", "jaeger", "baggage"])
    # b3 and jaeger raise on bytes values (their parsers call str methods); the others still work
    carrier: dict[str, object] = {
        "b3": b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
        "uber-trace-id": b"1:2:0:1",
        "traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01",
        "baggage": "user=alice",
    }
    with caplog.at_level(logging.WARNING, logger="veil"):
        context = built.extract(carrier)
    assert f"{trace.get_current_span(context).get_span_context().trace_id:032x}" == TRACE_ID
    assert baggage.get_baggage("user", context) == "alice"
    messages = [record.getMessage() for record in caplog.records]
    assert any("B3SingleFormat" in message or "b3 propagator" in message for message in messages)
    assert any("jaeger propagator" in message for message in messages)


def test_a_raising_member_does_not_stop_injection() -> None:
    class Exploding(textmap.TextMapPropagator):
        def extract(self, carrier: object, context: Context | None = None, getter: object = None) -> Context:
            raise RuntimeError("boom")

        def inject(self, carrier: object, context: Context | None = None, setter: object = None) -> None:
            raise RuntimeError("boom")

        @property
        def fields(self) -> set[str]:
            raise RuntimeError("boom")

    composite = GuardedCompositePropagator([Exploding(), TraceContextPropagator()])
    span = trace.NonRecordingSpan(SpanContext(int(TRACE_ID, 16), int(SPAN_ID, 16), is_remote=False))
    carrier: dict[str, str] = {}
    composite.inject(carrier, trace.set_span_in_context(span))
    assert carrier == {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00"}
    assert composite.fields == {"traceparent", "tracestate"}
    assert composite.extract({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"}) != Context()


@pytest.mark.parametrize("name", ["tracecontext", "b3", "b3multi", "jaeger"])
@pytest.mark.parametrize("sampled", [True, False])
def test_round_trip_from_a_real_sdk_span(name: str, sampled: bool) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    provider = TracerProvider(sampler=ALWAYS_ON if sampled else ALWAYS_OFF)
    propagator = build_propagator([name])
    with provider.get_tracer("tests").start_as_current_span("client") as span:
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
        sent = span.get_span_context()
    assert carrier
    received = trace.get_current_span(propagator.extract(carrier)).get_span_context()
    assert received.trace_id == sent.trace_id
    assert received.span_id == sent.span_id
    assert received.trace_flags.sampled is sampled
    assert received.is_remote


def test_baggage_round_trip() -> None:
    propagator = build_propagator(["tracecontext", "baggage"])
    context = baggage.set_baggage("tenant", "acme")
    carrier: dict[str, str] = {}
    propagator.inject(carrier, context)
    assert baggage.get_baggage("tenant", propagator.extract(carrier)) == "acme"


def test_all_formats_together_round_trip(tracer: trace.Tracer) -> None:
    propagator = build_propagator(list(PROPAGATOR_NAMES[:-1]))
    with tracer.start_as_current_span("client") as span:
        carrier: dict[str, str] = {}
        propagator.inject(carrier, baggage.set_baggage("k", "v"))
        sent = span.get_span_context()
    assert {"traceparent", "b3", "x-b3-traceid", "uber-trace-id", "baggage"} <= set(carrier)
    context = propagator.extract(carrier)
    received = trace.get_current_span(context).get_span_context()
    assert (received.trace_id, received.span_id) == (sent.trace_id, sent.span_id)
    assert baggage.get_baggage("k", context) == "v"
