"""Self-tests of the OTLP receiver fixture, driven by the official OpenTelemetry SDK exporters."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GRPCLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GRPCMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GRPCSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HTTPCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HTTPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HTTPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HTTPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from tests.fixtures.otlp import OTLPReceiver, ProgrammedResponse, ReceivedRequest

# Until tests/conftest.py registers tests.fixtures.otlp through pytest_plugins.

pytestmark = pytest.mark.timeout(30)

TRANSPORTS = ["grpc", "grpc-gzip", "http", "http-gzip", "http-deflate"]
LINKED_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
LINKED_SPAN_ID = 0xB7AD6B7169203331
SERVICE = "receiver-self-test"


def _http_compression(case: str) -> HTTPCompression:
    return {"http": HTTPCompression.NoCompression, "http-gzip": HTTPCompression.Gzip}.get(case, HTTPCompression.Deflate)


def _grpc_compression(case: str) -> grpc.Compression:
    return grpc.Compression.Gzip if case == "grpc-gzip" else grpc.Compression.NoCompression


def _span_exporter(receiver: OTLPReceiver, case: str, timeout: float = 5.0) -> Any:
    headers = {"x-tenant": "tenant-1"}
    if case.startswith("grpc"):
        return GRPCSpanExporter(
            endpoint=receiver.grpc_endpoint,
            insecure=True,
            headers=headers,
            timeout=timeout,
            compression=_grpc_compression(case),
        )
    return HTTPSpanExporter(
        endpoint=receiver.http_url("traces"),
        headers=headers,
        timeout=timeout,
        compression=_http_compression(case),
    )


def _log_exporter(receiver: OTLPReceiver, case: str) -> Any:
    if case.startswith("grpc"):
        return GRPCLogExporter(
            endpoint=receiver.grpc_endpoint, insecure=True, timeout=5, compression=_grpc_compression(case)
        )
    return HTTPLogExporter(endpoint=receiver.http_url("logs"), timeout=5, compression=_http_compression(case))


def _metric_exporter(receiver: OTLPReceiver, case: str) -> Any:
    if case.startswith("grpc"):
        return GRPCMetricExporter(
            endpoint=receiver.grpc_endpoint, insecure=True, timeout=5, compression=_grpc_compression(case)
        )
    return HTTPMetricExporter(endpoint=receiver.http_url("metrics"), timeout=5, compression=_http_compression(case))


def _transport(case: str) -> str:
    return case.split("-", 1)[0]


def _expected_compression(case: str) -> str | None:
    return {"http-gzip": "gzip", "http-deflate": "deflate"}.get(case)


@pytest.fixture
def tracer_provider() -> Iterator[TracerProvider]:
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: SERVICE}))
    yield provider
    provider.shutdown()


def _emit_trace(provider: TracerProvider) -> tuple[int, int, int]:
    tracer = provider.get_tracer("receiver.tests", "1.2.3")
    linked = SpanContext(
        LINKED_TRACE_ID,
        LINKED_SPAN_ID,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("v", "1")]),
    )
    with tracer.start_as_current_span("parent", kind=SpanKind.SERVER) as parent:
        with tracer.start_as_current_span(
            "child", kind=SpanKind.CLIENT, links=[Link(linked, {"link.reason": "retry"})]
        ) as child:
            child.set_attributes(
                {
                    "a.str": "value",
                    "a.bool": True,
                    "a.int": 42,
                    "a.float": 2.5,
                    "a.strs": ["x", "y"],
                    "a.bools": [True, False],
                    "a.ints": [1, 2, 3],
                    "a.floats": [0.5, 1.5],
                }
            )
            child.add_event("cache.miss", {"cache.key": "k1", "cache.size": 3}, timestamp=1_000)
            child.set_status(StatusCode.ERROR, "upstream broke")
        context = parent.get_span_context()
    return context.trace_id, context.span_id, child.get_span_context().span_id


# ------------------------------------------------------------------------------------------------------
# Spans


@pytest.mark.parametrize("case", TRANSPORTS)
def test_spans_are_decoded_and_flattened(
    otlp_receiver: OTLPReceiver, tracer_provider: TracerProvider, case: str
) -> None:
    exporter = _span_exporter(otlp_receiver, case)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_id, parent_id, child_id = _emit_trace(tracer_provider)

    spans = otlp_receiver.wait_for_spans(count=2, timeout=5)
    by_name = {span.name: span for span in spans}
    parent, child = by_name["parent"], by_name["child"]

    assert parent.trace_id == child.trace_id == f"{trace_id:032x}"
    assert parent.span_id == f"{parent_id:016x}"
    assert parent.parent_span_id == ""
    assert parent.is_root
    assert child.span_id == f"{child_id:016x}"
    assert child.parent_span_id == parent.span_id
    assert parent.kind == "SERVER"
    assert child.kind == "CLIENT"
    # The Python SDK encodes the is-remote bits (not the sampled bit) into span and link flags.
    assert child.flags == trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
    assert child.resource[SERVICE_NAME] == SERVICE
    assert (child.scope_name, child.scope_version) == ("receiver.tests", "1.2.3")
    assert child.attributes == {
        "a.str": "value",
        "a.bool": True,
        "a.int": 42,
        "a.float": 2.5,
        "a.strs": ("x", "y"),
        "a.bools": (True, False),
        "a.ints": (1, 2, 3),
        "a.floats": (0.5, 1.5),
    }
    assert type(child.attributes["a.int"]) is int
    assert type(child.attributes["a.float"]) is float
    assert len(child.events) == 1
    event = child.events[0]
    assert (event.name, event.time_ns, event.attributes) == (
        "cache.miss",
        1_000,
        {"cache.key": "k1", "cache.size": 3},
    )
    assert len(child.links) == 1
    link = child.links[0]
    assert link.trace_id == f"{LINKED_TRACE_ID:032x}"
    assert link.span_id == f"{LINKED_SPAN_ID:016x}"
    assert link.flags & trace_pb2.SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
    assert link.attributes == {"link.reason": "retry"}
    assert (child.status_code, child.status_message) == ("ERROR", "upstream broke")
    assert parent.status_code == "UNSET"
    assert child.start_time_ns <= child.end_time_ns
    assert parent.start_time_ns <= child.start_time_ns
    assert (child.dropped_attributes_count, child.dropped_events_count, child.dropped_links_count) == (
        0,
        0,
        0,
    )
    assert child.transport == parent.transport == _transport(case)

    requests = otlp_receiver.requests("traces")
    assert len(requests) == 2  # SimpleSpanProcessor: one request per span
    for request in requests:
        assert request.transport == _transport(case)
        assert request.header("x-tenant") == "tenant-1"
        assert request.compression == _expected_compression(case)
        assert request.accepted


# ------------------------------------------------------------------------------------------------------
# Logs


@pytest.mark.parametrize("case", TRANSPORTS)
def test_log_records_are_decoded_with_trace_context(
    otlp_receiver: OTLPReceiver, tracer_provider: TracerProvider, case: str
) -> None:
    logger_provider = LoggerProvider(resource=Resource.create({SERVICE_NAME: SERVICE}))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(_log_exporter(otlp_receiver, case)))
    logger = logger_provider.get_logger("receiver.logs", "0.1")
    try:
        with tracer_provider.get_tracer("t").start_as_current_span("work") as span:
            logger.emit(
                timestamp=1_700_000_000_000_000_000,
                context=set_span_in_context(span),
                severity_number=SeverityNumber.WARN,
                severity_text="WARN",
                body={"msg": "disk low", "parts": [1, "two", 3.5], "raw": b"\x00\x01"},
                attributes={"disk.free": 12, "disk.mount": "/data"},
                event_name="veil.disk",
            )
            context = span.get_span_context()
    finally:
        logger_provider.shutdown()

    (log,) = otlp_receiver.wait_for_logs(timeout=5)
    assert log.resource[SERVICE_NAME] == SERVICE
    assert (log.scope_name, log.scope_version) == ("receiver.logs", "0.1")
    assert log.time_ns == 1_700_000_000_000_000_000
    assert log.observed_time_ns > 0
    assert (log.severity_number, log.severity_text) == (SeverityNumber.WARN.value, "WARN")
    assert log.body == {"msg": "disk low", "parts": (1, "two", 3.5), "raw": b"\x00\x01"}
    assert log.attributes == {"disk.free": 12, "disk.mount": "/data"}
    assert log.trace_id == f"{context.trace_id:032x}"
    assert log.span_id == f"{context.span_id:016x}"
    assert log.flags & 0x01  # sampled
    assert log.event_name == "veil.disk"
    assert log.transport == _transport(case)
    assert otlp_receiver.requests("logs")[0].compression == _expected_compression(case)


# ------------------------------------------------------------------------------------------------------
# Metrics


@pytest.mark.parametrize("case", TRANSPORTS)
def test_metrics_counter_and_histogram_with_exemplar(
    otlp_receiver: OTLPReceiver, tracer_provider: TracerProvider, case: str
) -> None:
    reader = PeriodicExportingMetricReader(_metric_exporter(otlp_receiver, case), export_interval_millis=3_600_000)
    meter_provider = MeterProvider(metric_readers=[reader], resource=Resource.create({SERVICE_NAME: SERVICE}))
    meter = meter_provider.get_meter("receiver.metrics", "9.9")
    counter = meter.create_counter("jobs.done", unit="{job}", description="Jobs finished")
    histogram = meter.create_histogram("job.duration", unit="s", description="Job duration")
    try:
        counter.add(3, {"queue": "fast"})
        counter.add(4, {"queue": "fast"})
        with tracer_provider.get_tracer("t").start_as_current_span("job") as span:
            histogram.record(5.0, {"queue": "fast"})
            histogram.record(50.0, {"queue": "fast"})
            context = span.get_span_context()
    finally:
        meter_provider.shutdown()  # collects and exports exactly once

    jobs = otlp_receiver.wait_for_metric("jobs.done", timeout=5)
    assert jobs.resource[SERVICE_NAME] == SERVICE
    assert (jobs.scope_name, jobs.scope_version) == ("receiver.metrics", "9.9")
    assert (jobs.kind, jobs.unit, jobs.description) == ("sum", "{job}", "Jobs finished")
    assert (jobs.temporality, jobs.monotonic) == ("CUMULATIVE", True)
    (point,) = jobs.points
    assert point.attributes == {"queue": "fast"}
    assert point.value == 7
    assert type(point.value) is int
    assert jobs.transport == _transport(case)

    duration = otlp_receiver.wait_for_metric("job.duration", timeout=5)
    assert (duration.kind, duration.temporality, duration.monotonic) == ("histogram", "CUMULATIVE", None)
    (point,) = duration.points
    assert (point.count, point.sum, point.min, point.max) == (2, 55.0, 5.0, 50.0)
    assert point.value is None
    assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
    assert sum(point.bucket_counts) == 2
    assert point.explicit_bounds[:3] == (0.0, 5.0, 10.0)
    assert point.exemplars, "a measurement inside a sampled span carries an exemplar"
    assert {exemplar.trace_id for exemplar in point.exemplars} == {f"{context.trace_id:032x}"}
    assert {exemplar.span_id for exemplar in point.exemplars} == {f"{context.span_id:016x}"}
    assert {exemplar.value for exemplar in point.exemplars} <= {5.0, 50.0}


# ------------------------------------------------------------------------------------------------------
# OTLP/JSON and raw HTTP


def _json_trace_document() -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "json.scope", "version": "1"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "eee19b7ec3c1b173",
                                "traceState": "k=v",
                                "flags": 257,
                                "name": "json-span",
                                "kind": 3,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "attributes": [
                                    {"key": "i", "value": {"intValue": "42"}},
                                    {"key": "d", "value": {"doubleValue": 1.25}},
                                    {"key": "b", "value": {"boolValue": True}},
                                    {
                                        "key": "raw",
                                        "value": {"bytesValue": base64.b64encode(b"\xff\x00").decode()},
                                    },
                                    {
                                        "key": "arr",
                                        "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 7}]}},
                                    },
                                    {
                                        "key": "kv",
                                        "value": {
                                            "kvlistValue": {"values": [{"key": "inner", "value": {"boolValue": False}}]}
                                        },
                                    },
                                    {"key": "empty", "value": {}},
                                ],
                                "events": [{"timeUnixNano": "5", "name": "e1"}],
                                "links": [
                                    {
                                        "traceId": "0af7651916cd43dd8448eb211c80319c",
                                        "spanId": "b7ad6b7169203331",
                                        "traceState": "a=b",
                                        "attributes": [{"key": "why", "value": {"stringValue": "batch"}}],
                                    }
                                ],
                                "status": {"code": 2, "message": "bad"},
                                "unknownFutureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_json_post_is_decoded_with_hex_ids_and_enum_ints(otlp_receiver: OTLPReceiver) -> None:
    response = httpx.post(
        otlp_receiver.http_url("traces"),
        content=json.dumps(_json_trace_document()).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}

    (span,) = otlp_receiver.spans()
    assert span.trace_id == "5b8efff798038103d269b633813fc60c"
    assert span.span_id == "eee19b7ec3c1b174"
    assert span.parent_span_id == "eee19b7ec3c1b173"
    assert (span.trace_state, span.flags) == ("k=v", 257)
    assert span.kind == "CLIENT"
    assert (span.status_code, span.status_message) == ("ERROR", "bad")
    assert (span.start_time_ns, span.end_time_ns) == (1544712660000000000, 1544712661000000000)
    assert span.resource == {"service.name": "json-svc"}
    assert span.attributes == {
        "i": 42,
        "d": 1.25,
        "b": True,
        "raw": b"\xff\x00",
        "arr": ("a", 7),
        "kv": {"inner": False},
        "empty": None,
    }
    assert [(event.name, event.time_ns) for event in span.events] == [("e1", 5)]
    assert [(link.trace_id, link.span_id, link.trace_state, link.attributes) for link in span.links] == [
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "a=b", {"why": "batch"})
    ]
    (request,) = otlp_receiver.requests()
    assert (request.content_type, request.transport) == ("application/json", "http")


def test_otlp_json_logs_and_gauge(otlp_receiver: OTLPReceiver) -> None:
    logs = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": "10",
                                "severityNumber": 17,
                                "severityText": "ERROR",
                                "body": {"stringValue": "boom"},
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "eventName": "app.crash",
                            }
                        ]
                    }
                ]
            }
        ]
    }
    metrics = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "queue.depth",
                                "gauge": {"dataPoints": [{"asDouble": 3.5, "timeUnixNano": "11"}]},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    for signal, document in (("logs", logs), ("metrics", metrics)):
        response = httpx.post(otlp_receiver.http_url(signal), json=document)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text

    (log,) = otlp_receiver.logs()
    assert (log.severity_number, log.severity_text, log.body, log.event_name) == (
        17,
        "ERROR",
        "boom",
        "app.crash",
    )
    assert (log.trace_id, log.span_id) == ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")
    gauge = otlp_receiver.wait_for_metric("queue.depth", timeout=1)
    assert (gauge.kind, gauge.temporality, gauge.monotonic) == ("gauge", None, None)
    assert [(point.value, point.time_ns) for point in gauge.points] == [(3.5, 11)]


def _protobuf_request() -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    span.span_id = bytes.fromhex("eee19b7ec3c1b174")
    span.name = "raw"
    span.kind = trace_pb2.Span.SpanKind.SPAN_KIND_PRODUCER
    return request


def test_raw_deflate_and_gzip_bodies(otlp_receiver: OTLPReceiver) -> None:
    payload = _protobuf_request().SerializeToString()
    bodies = {
        "deflate": zlib.compress(payload),
        "gzip": gzip.compress(payload),
    }
    for encoding, body in bodies.items():
        response = httpx.post(
            otlp_receiver.http_url("traces"),
            content=body,
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": encoding},
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-protobuf"
        trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert [(span.name, span.kind) for span in otlp_receiver.spans()] == [("raw", "PRODUCER")] * 2
    assert [request.compression for request in otlp_receiver.requests()] == ["deflate", "gzip"]


@pytest.mark.parametrize(
    ("path", "content_type", "body", "status"),
    [
        ("/v1/traces", "text/plain", b"hello", 415),
        ("/v1/traces", "application/x-protobuf", b"\xff\xff\xff", 400),
        ("/v1/traces", "application/json", b"{not json", 400),
        (
            "/v1/traces",
            "application/json",
            b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}',
            400,
        ),
        ("/v1/profiles", "application/x-protobuf", b"", 404),
    ],
)
def test_undecodable_requests_are_refused_and_reported(
    otlp_receiver: OTLPReceiver, path: str, content_type: str, body: bytes, status: int
) -> None:
    response = httpx.post(otlp_receiver.http_endpoint + path, content=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert otlp_receiver.requests() == []
    assert len(otlp_receiver.errors()) == 1
    with pytest.raises(AssertionError, match="1 decode error"):
        otlp_receiver.wait_for_spans(timeout=0)


# ------------------------------------------------------------------------------------------------------
# Programmed responses


def test_programmed_503_is_retried_by_the_http_exporter(
    otlp_receiver: OTLPReceiver, tracer_provider: TracerProvider
) -> None:
    otlp_receiver.program("traces", ProgrammedResponse(http_status=503, retry_after=0), times=1)
    exporter = _span_exporter(otlp_receiver, "http", timeout=3)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer_provider.get_tracer("t").start_span("retried").end()

    first, second = otlp_receiver.wait_for_requests(count=2, timeout=5, signal="traces")
    assert (first.accepted, first.response.resolved_http_status) == (False, 503)
    assert second.accepted
    assert [span.name for span in otlp_receiver.spans()] == ["retried"]  # rejected copy not counted
    assert [span.name for span in otlp_receiver.spans(include_rejected=True)] == ["retried", "retried"]


def test_persistent_503_fails_the_export_within_its_timeout(
    otlp_receiver: OTLPReceiver, tracer_provider: TracerProvider
) -> None:
    otlp_receiver.program("traces", ProgrammedResponse(http_status=503, message="overloaded"), times=None)
    exporter = _span_exporter(otlp_receiver, "http", timeout=0.5)
    tracer = tracer_provider.get_tracer("t")
    span = tracer.start_span("lost")
    span.end()

    assert exporter.export([span]) is SpanExportResult.FAILURE
    requests = otlp_receiver.requests("traces")
    assert requests
    assert not any(request.accepted for request in requests)
    assert otlp_receiver.spans() == []
    response = httpx.post(
        otlp_receiver.http_url("traces"),
        content=_protobuf_request().SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 503
    from google.rpc import status_pb2

    status = status_pb2.Status.FromString(response.content)
    assert (status.code, status.message) == (grpc.StatusCode.UNAVAILABLE.value[0], "overloaded")
    exporter.shutdown()


def test_programmed_unavailable_is_retried_by_the_grpc_exporter(
    otlp_receiver: OTLPReceiver, tracer_provider: TracerProvider
) -> None:
    otlp_receiver.program(
        "traces", ProgrammedResponse(grpc_code=grpc.StatusCode.UNAVAILABLE, retry_after=0.05), times=2
    )
    exporter = _span_exporter(otlp_receiver, "grpc", timeout=5)
    span = tracer_provider.get_tracer("t").start_span("grpc-retried")
    span.end()

    assert exporter.export([span]) is SpanExportResult.SUCCESS
    requests = otlp_receiver.requests("traces", "grpc")
    assert [request.accepted for request in requests] == [False, False, True]
    assert requests[0].response.resolved_http_status == 503
    assert [received.name for received in otlp_receiver.spans()] == ["grpc-retried"]
    exporter.shutdown()


def test_partial_success_over_http_and_grpc(otlp_receiver: OTLPReceiver) -> None:
    otlp_receiver.program("traces", ProgrammedResponse(rejected=1, message="one too many"), times=2)
    request = _protobuf_request()
    response = httpx.post(
        otlp_receiver.http_url("traces"),
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    partial = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content).partial_success
    assert (response.status_code, partial.rejected_spans, partial.error_message) == (200, 1, "one too many")

    with grpc.insecure_channel(f"127.0.0.1:{otlp_receiver.grpc_port}") as channel:
        reply = trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=5)
    assert (reply.partial_success.rejected_spans, reply.partial_success.error_message) == (1, "one too many")
    assert len(otlp_receiver.spans()) == 2  # a partial success still counts as received


def test_programmed_delay_exceeds_the_grpc_deadline(otlp_receiver: OTLPReceiver) -> None:
    otlp_receiver.program("all", ProgrammedResponse(delay=0.5), times=1)
    with (
        grpc.insecure_channel(f"127.0.0.1:{otlp_receiver.grpc_port}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(_protobuf_request(), timeout=0.1)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The program applied to each signal once: the next trace request is a normal success.
    with grpc.insecure_channel(f"127.0.0.1:{otlp_receiver.grpc_port}") as channel:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(_protobuf_request(), timeout=5)


def test_programs_queue_then_success_resumes_and_clear_resets(otlp_receiver: OTLPReceiver) -> None:
    otlp_receiver.program("logs", ProgrammedResponse(http_status=429), times=1)
    otlp_receiver.program("logs", ProgrammedResponse(http_status=400), times=1)
    otlp_receiver.program("metrics", ProgrammedResponse(http_status=500), times=None)
    statuses = []
    for _ in range(3):
        response = httpx.post(
            otlp_receiver.http_url("logs"), content=b"", headers={"Content-Type": "application/x-protobuf"}
        )
        statuses.append(response.status_code)
    assert statuses == [429, 400, 200]
    otlp_receiver.clear()
    assert otlp_receiver.requests() == []
    response = httpx.post(
        otlp_receiver.http_url("metrics"), content=b"", headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 200
    with pytest.raises(ValueError, match="times"):
        otlp_receiver.program("logs", ProgrammedResponse(), times=0)


def test_response_mapping_between_http_and_grpc() -> None:
    assert ProgrammedResponse().accepted("grpc")
    assert ProgrammedResponse(http_status=429).resolved_grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ProgrammedResponse(grpc_code=grpc.StatusCode.UNAUTHENTICATED).resolved_http_status == 401
    assert not ProgrammedResponse(http_status=502).accepted("grpc")
    assert ProgrammedResponse(rejected=3).accepted("http")


# ------------------------------------------------------------------------------------------------------
# Waiting helpers


def test_waiting_helpers_time_out_with_a_summary(otlp_receiver: OTLPReceiver) -> None:
    with pytest.raises(AssertionError, match=r"expected >= 1 span\(s\), found 0 within 0.1s") as caught:
        otlp_receiver.wait_for_spans(timeout=0.1)
    assert "Received 0 request(s)" in str(caught.value)

    httpx.post(
        otlp_receiver.http_url("traces"),
        content=_protobuf_request().SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    with pytest.raises(AssertionError, match="matching the predicate, found 0") as caught:
        otlp_receiver.wait_for_spans(timeout=0.1, predicate=lambda span: span.name == "missing")
    assert "'raw' PRODUCER trace=5b8efff798038103d269b633813fc60c" in str(caught.value)
    with pytest.raises(AssertionError, match="expected >= 1 log record"):
        otlp_receiver.wait_for_logs(timeout=0.05)
    with pytest.raises(AssertionError, match="expected a metric named 'nope'"):
        otlp_receiver.wait_for_metric("nope", timeout=0.05)
    with pytest.raises(AssertionError, match=r"expected >= 2 request\(s\) \(signal=traces"):
        otlp_receiver.wait_for_requests(count=2, timeout=0.05, signal="traces")


def test_waiting_wakes_up_when_data_arrives_from_another_thread(otlp_receiver: OTLPReceiver) -> None:
    def send() -> None:
        httpx.post(
            otlp_receiver.http_url("traces"),
            content=_protobuf_request().SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )

    timer = threading.Timer(0.1, send)
    timer.start()
    try:
        (span,) = otlp_receiver.wait_for_spans(timeout=10)
    finally:
        timer.join()
    assert span.name == "raw"


def test_standalone_receiver_starts_and_stops_cleanly() -> None:
    with OTLPReceiver() as receiver:
        assert receiver.grpc_endpoint.startswith("http://127.0.0.1:")
        assert receiver.http_endpoint == f"http://127.0.0.1:{receiver.http_port}"
        assert receiver.grpc_port != receiver.http_port
        response = httpx.get(receiver.http_url("traces"))
        assert response.status_code == 405
    with pytest.raises(httpx.ConnectError):
        httpx.post(receiver.http_url("traces"), content=b"", timeout=1)


def test_request_header_lookup_is_case_insensitive() -> None:
    request = ReceivedRequest(
        signal="traces",
        transport="http",
        target="/v1/traces",
        headers=(("x-api-key", "secret"),),
        content_type="application/x-protobuf",
        compression=None,
        body_size=0,
        message=trace_service_pb2.ExportTraceServiceRequest(),
        response=ProgrammedResponse(),
        accepted=True,
        received_at=0.0,
    )
    assert request.header("X-API-Key") == "secret"
    assert request.header("missing") is None
