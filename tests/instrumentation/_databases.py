"""Helpers shared by the database instrumentation tests: recording providers with one instrumentation on,
a request span to run queries under, span checks, and the OTLP leak check of the planted-literal properties.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanKind, StatusCode

import veil
from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation._recording import Recording, recording

DURATION = "db.client.operation.duration"


class DBRecording(Recording):
    def client_spans(self) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.kind is SpanKind.CLIENT]

    def only(self, name: str | None = None) -> ReadableSpan:
        spans = [span for span in self.client_spans() if name is None or span.name == name]
        assert len(spans) == 1, [(span.name, dict(span.attributes or {})) for span in self.client_spans()]
        return spans[0]

    @contextmanager
    def request(self, name: str = "GET /orders") -> Iterator[ReadableSpan]:
        """A SERVER span made current, as an instrumented web framework makes one."""
        tracer = self.tracer_provider.get_tracer("tests.request")
        with tracer.start_as_current_span(name, kind=SpanKind.SERVER) as span:
            yield span  # type: ignore[misc]


@contextmanager
def tracing(*makers: Callable[[], Any], **options: Any) -> Iterator[DBRecording]:
    """A DBRecording with the instrumentors `makers` make instrumented on it (uninstrumented afterwards)."""
    for providers in recording(DBRecording, reset_settings=True):
        instrumentors = [make() for make in makers]
        for instrumentor in instrumentors:
            instrumentor.instrument(**providers.providers, **options)
        try:
            yield providers
        finally:
            for instrumentor in instrumentors:
                instrumentor.uninstrument()


def traced_fixture(*makers: Callable[[], Any], **options: Any) -> Any:
    """A `traced` fixture: `tracing(*makers, **options)` for one test."""

    @pytest.fixture(name="traced")
    def traced() -> Iterator[DBRecording]:
        with tracing(*makers, **options) as providers:
            yield providers

    return traced


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def assert_children_of(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> None:
    for span in spans:
        assert span.parent is not None and span.parent.span_id == parent.context.span_id
        assert span.context.trace_id == parent.context.trace_id


def assert_failed_once(traced: DBRecording, error_type: str, status_code: str | None = None) -> ReadableSpan:
    """Exactly one span failed, with `error_type` (and the status code), no message and no event."""
    failed = [span for span in traced.client_spans() if span.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1, [(span.name, attributes(span)) for span in traced.client_spans()]
    span = failed[0]
    assert attributes(span)[ERROR_TYPE] == error_type
    if status_code is not None:
        assert attributes(span)["db.response.status_code"] == status_code
    assert not span.status.description  # drivers echo values in their messages
    assert not span.events
    return span


def duration_points(traced: DBRecording) -> list[Any]:
    return traced.points(DURATION)


@contextmanager
def veil_over_otlp(
    configure_veil: Callable[..., veil.Telemetry], receiver: OTLPReceiver, *names: str
) -> Iterator[veil.Telemetry]:
    """veil configured to export to the test's OTLP receiver, with the named instrumentations on."""
    handle = configure_veil(
        service_name="db-tests",
        traces_exporter="otlp",
        metrics_exporter="none",
        logs_exporter="none",
        otlp_protocol="http/protobuf",
        otlp_endpoint=receiver.http_endpoint,
    )
    result = veil.instrument(*names)
    assert set(names) <= set(result.instrumented), result.skipped
    yield handle


def assert_never_exported(handle: veil.Telemetry, receiver: OTLPReceiver, secrets: Sequence[str]) -> int:
    """Flush, then check that no secret appears anywhere in what the receiver got; returns the span count."""
    assert handle.force_flush()
    spans = receiver.spans()
    for span in spans:
        texts = [span.name, span.status_message, *(str(value) for value in span.attributes.values())]
        texts += [str(value) for event in span.events for value in event.attributes.values()]
        for secret in secrets:
            assert not any(secret in text for text in texts), (secret, span.name, span.attributes)
    receiver.clear()
    return len(spans)
