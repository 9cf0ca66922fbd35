"""Exporter wrappers: redacted copies on every signal, originals untouched, and nothing leaks over OTLP."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode

from tests.fixtures.otlp import OTLPReceiver
from tests.redaction.secrets_factory import VALUE_CATEGORIES, make
from veil.redaction import REDACTION_COUNT_ATTRIBUTE, REDACTION_KEYS_ATTRIBUTE, RedactionConfig, Redactor
from veil.redaction.export import (
    ExportRedaction,
    RedactingLogExporter,
    RedactingMetricExporter,
    RedactingSpanExporter,
)

GITHUB = make("github_token", random.Random(1))


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter, InMemorySpanExporter]]:
    raw, redacted = InMemorySpanExporter(), InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"deploy.token": "t-123", "service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(raw))
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(redacted, Redactor.default())))
    yield provider, raw, redacted
    provider.shutdown()


def test_every_span_surface_is_redacted_and_the_original_is_untouched(tracing) -> None:  # type: ignore[no-untyped-def]
    provider, raw, redacted = tracing
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("other") as other:
        pass
    with tracer.start_as_current_span(
        "login bob@example.com",
        attributes={"password": "hunter2", "http.route": "/login", "http.request.method": "POST"},
        links=[Link(other.get_span_context(), {"note": f"token {GITHUB}"})],
    ) as span:
        span.add_event("retry", {"detail": "password=hunter2"})
        try:
            raise ValueError(f"bad credential {GITHUB}")
        except ValueError as error:
            span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"failed with {GITHUB}"))

    original = raw.get_finished_spans()[-1]
    copy = redacted.get_finished_spans()[-1]
    dumped = copy.to_json()
    assert "hunter2" not in dumped and GITHUB not in dumped and "bob@example.com" not in dumped
    assert copy.name == "login [REDACTED:email]"
    assert copy.attributes["http.route"] == "/login"
    assert copy.attributes[REDACTION_COUNT_ATTRIBUTE] == 7
    assert REDACTION_KEYS_ATTRIBUTE not in copy.attributes
    assert copy.status.description == "failed with [REDACTED:github_token]"
    assert copy.events[1].attributes["exception.message"] == "bad credential [REDACTED:github_token]"
    assert copy.resource.attributes["deploy.token"] == "[REDACTED:token]"
    assert copy.context == original.context and copy.start_time == original.start_time
    # the original, shared with the other exporter, is unchanged
    assert original.attributes["password"] == "hunter2" and GITHUB in original.to_json()
    assert original.resource.attributes["deploy.token"] == "t-123"


def test_export_redaction_alone_copies_what_the_wrappers_export(tracing) -> None:  # type: ignore[no-untyped-def]
    """The seam the pytest capture uses: the same copies as the span wrapper, without an exporter."""
    provider, raw, redacted = tracing
    with provider.get_tracer("test").start_as_current_span("call", attributes={"password": "hunter2", "page": 2}):
        pass
    original = raw.get_finished_spans()[-1]
    copy = ExportRedaction(Redactor.default()).span(original)
    assert copy is not original and original.attributes["password"] == "hunter2"
    assert dict(copy.attributes) == dict(redacted.get_finished_spans()[-1].attributes)
    assert copy.attributes["password"] == "[REDACTED:password]" and copy.attributes["page"] == 2


def test_clean_spans_pass_through_as_the_same_object() -> None:
    inner = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    raw = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(raw))
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(inner, Redactor.default())))
    with provider.get_tracer("t").start_as_current_span("GET /users/{id}", attributes={"http.route": "/users/{id}"}):
        pass
    assert inner.get_finished_spans()[0] is raw.get_finished_spans()[0]


def test_debug_option_records_keys_never_values() -> None:
    inner = InMemorySpanExporter()
    provider = TracerProvider()
    redactor = Redactor(RedactionConfig(debug_keys=True))
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(inner, redactor)))
    with provider.get_tracer("t").start_as_current_span("s", attributes={"api_key": "k-1", "ok": "x"}):
        pass
    attributes = inner.get_finished_spans()[0].attributes
    assert attributes[REDACTION_KEYS_ATTRIBUTE] == ("api_key",)
    assert "k-1" not in json.dumps(dict(attributes))


def test_logs_body_attributes_and_resource() -> None:
    inner = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(RedactingLogExporter(inner, Redactor.default())))
    logger = logging.getLogger("veil.tests.redaction")
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.warning("user %s logged in with password=%s", "bob@example.com", "hunter2", extra={"api_key": "k-1"})
    finally:
        logger.removeHandler(handler)
    (record,) = inner.get_finished_logs()
    assert record.log_record.body == "user [REDACTED:email] logged in with password=[REDACTED:password]"
    assert record.log_record.attributes["api_key"] == "[REDACTED:api_key]"
    assert record.log_record.attributes[REDACTION_COUNT_ATTRIBUTE] == 3


def test_metric_point_attributes() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("t").create_counter("logins")
    counter.add(1, {"user.email": "bob@example.com", "http.route": "/login"})
    data = reader.get_metrics_data()
    assert data is not None

    captured = []

    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    class Inner(MetricExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):  # type: ignore[no-untyped-def]
            captured.append(metrics_data)
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:  # type: ignore[no-untyped-def]
            pass

    RedactingMetricExporter(Inner(), Redactor.default()).export(data)
    point = captured[0].resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    assert point.attributes == {"user.email": "[REDACTED:email]", "http.route": "/login"}
    original = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    assert original.attributes["user.email"] == "bob@example.com"
    provider.shutdown()


def test_a_span_that_cannot_be_copied_is_dropped_not_exported_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    inner = InMemorySpanExporter()
    exporter = RedactingSpanExporter(inner, Redactor.default())
    monkeypatch.setattr(exporter._redaction, "span", lambda span: 1 / 0)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("s", attributes={"password": "x"}):
        pass
    assert inner.get_finished_spans() == ()


# ------------------------------------------------------------------------------------------ end to end

PLACES = ("attribute", "nested_json", "url", "header", "log_body", "exception_message", "event", "span_name")


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as started:
        yield started


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(category=st.sampled_from(VALUE_CATEGORIES), place=st.sampled_from(PLACES), seed=st.integers(0, 2**32))
def test_generated_secrets_never_reach_the_otlp_receiver(
    receiver: OTLPReceiver, category: str, place: str, seed: int
) -> None:
    receiver.clear()
    secret = make(category, random.Random(seed))
    redactor = Redactor.default()
    span_exporter = RedactingSpanExporter(OTLPSpanExporter(endpoint=receiver.http_url("traces")), redactor)
    log_exporter = RedactingLogExporter(OTLPLogExporter(endpoint=receiver.http_url("logs")), redactor)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    metric_reader = PeriodicExportingMetricReader(
        RedactingMetricExporter(OTLPMetricExporter(endpoint=receiver.http_url("metrics")), redactor),
        export_interval_millis=3_600_000,
    )
    meter_provider = MeterProvider(metric_readers=[metric_reader])
    try:
        tracer = tracer_provider.get_tracer("e2e")
        name = f"op {secret}" if place == "span_name" else "op"
        with tracer.start_as_current_span(name) as span:
            if place == "attribute":
                span.set_attribute("note", f"value: {secret}")
            elif place == "nested_json":
                span.set_attribute("payload", json.dumps({"a": {"b": [f"x {secret}"]}}))
            elif place == "url":
                span.set_attribute("url.full", f"https://h.example/p?q=1&next={secret}")
            elif place == "header":
                span.set_attribute("http.request.header.x-custom", [secret])
            elif place == "event":
                span.add_event("e", {"detail": secret})
            elif place == "exception_message":
                span.record_exception(RuntimeError(f"failed: {secret}"))
        logger = logger_provider.get_logger("e2e")
        body = f"log {secret}" if place == "log_body" else "log"
        from opentelemetry._logs import LogRecord

        logger.emit(LogRecord(body=body, attributes={"k": secret if place == "attribute" else "v"}))
        meter_provider.get_meter("e2e").create_counter("c").add(1, {"label": secret})
        metric_reader.collect()
        receiver.wait_for_spans(count=1)
    finally:
        tracer_provider.shutdown()
        logger_provider.shutdown()
        meter_provider.shutdown()
    payload = b"".join(request.message.SerializeToString() for request in receiver.requests())
    assert receiver.requests("logs") and receiver.requests("metrics")
    assert secret.encode() not in payload
    for line in secret.splitlines():
        if len(line) > 12:
            assert line.encode() not in payload
