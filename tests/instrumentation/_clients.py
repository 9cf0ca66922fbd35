"""Helpers shared by the HTTP client instrumentation tests: in-memory SDK providers and span checks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from veil import _guard


@dataclass
class Providers:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def client_spans(self) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.kind is SpanKind.CLIENT]

    def only_client_span(self) -> ReadableSpan:
        spans = self.client_spans()
        assert len(spans) == 1, [(span.name, dict(span.attributes or {})) for span in spans]
        return spans[0]

    def metric_points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        points: list[Any] = []
        if data is None:
            return points
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


def in_memory_providers() -> Iterator[Providers]:
    """Body of each test module's `providers` fixture: SDK providers with in-memory span and metric readers."""
    _guard.reset_for_tests()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Providers(tracer_provider, meter_provider, exporter, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def traceparent_ids(value: str | None) -> tuple[str, str]:
    """(trace id, parent span id) of a traceparent header, as lowercase hex."""
    assert value is not None, "no traceparent header arrived"
    version, trace_id, span_id, _flags = value.split("-")
    assert version == "00"
    return trace_id, span_id


def ids_of(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def assert_propagated(span: ReadableSpan, traceparent: str | None) -> None:
    assert traceparent_ids(traceparent) == ids_of(span)


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


SIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20240101&X-Amz-Signature=deadbeef"
    "&flag&empty=&sig=abc&Signature=xyz&AWSAccessKeyId=AKID&X-Goog-Signature=goog&color=blue"
)
REDACTED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"
    "&flag&empty=&sig=REDACTED&Signature=REDACTED&AWSAccessKeyId=REDACTED&X-Goog-Signature=REDACTED&color=blue"
)


def expected_names(spans: Sequence[ReadableSpan]) -> list[str]:
    return [span.name for span in spans]
