"""Turning what the services exported (OTLP) back into spans and log lines the terminal can show.

Spans from the three processes are rebuilt as SDK `ReadableSpan`s whose parents are marked local, so veil's
console exporter draws one tree per trace across the process boundaries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

__all__ = ["LogLine", "any_value", "log_lines", "readable_spans"]

_KINDS = {
    trace_pb2.Span.SPAN_KIND_SERVER: SpanKind.SERVER,
    trace_pb2.Span.SPAN_KIND_CLIENT: SpanKind.CLIENT,
    trace_pb2.Span.SPAN_KIND_PRODUCER: SpanKind.PRODUCER,
    trace_pb2.Span.SPAN_KIND_CONSUMER: SpanKind.CONSUMER,
}
_STATUS = {
    trace_pb2.Status.STATUS_CODE_OK: StatusCode.OK,
    trace_pb2.Status.STATUS_CODE_ERROR: StatusCode.ERROR,
}


def any_value(value: common_pb2.AnyValue) -> Any:
    """An OTLP AnyValue as a Python value (lists as tuples, maps as dicts)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(any_value(item) for item in value.array_value.values)
    if kind == "kvlist_value":
        return {item.key: any_value(item.value) for item in value.kvlist_value.values}
    return getattr(value, kind)


def _attributes(key_values: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {item.key: any_value(item.value) for item in key_values}


def _context(trace_id: bytes, span_id: bytes, flags: int) -> SpanContext:
    return SpanContext(
        int.from_bytes(trace_id, "big"),
        int.from_bytes(span_id, "big"),
        is_remote=False,
        trace_flags=TraceFlags(flags & 0xFF),
    )


def readable_spans(requests: Iterable[trace_service_pb2.ExportTraceServiceRequest]) -> list[ReadableSpan]:
    """Every span of the export requests, with local parents (so a tree can cross processes)."""
    result = []
    for request in requests:
        for resource_spans in request.resource_spans:
            resource = Resource(_attributes(resource_spans.resource.attributes))
            for scope_spans in resource_spans.scope_spans:
                scope = InstrumentationScope(scope_spans.scope.name, scope_spans.scope.version or None)
                for span in scope_spans.spans:
                    parent = _context(span.trace_id, span.parent_span_id, span.flags) if span.parent_span_id else None
                    result.append(
                        ReadableSpan(
                            name=span.name,
                            context=_context(span.trace_id, span.span_id, span.flags),
                            parent=parent,
                            resource=resource,
                            attributes=_attributes(span.attributes),
                            events=[
                                Event(event.name, _attributes(event.attributes), event.time_unix_nano)
                                for event in span.events
                            ],
                            kind=_KINDS.get(span.kind, SpanKind.INTERNAL),
                            status=Status(_STATUS.get(span.status.code, StatusCode.UNSET), span.status.message or None),
                            start_time=span.start_time_unix_nano,
                            end_time=span.end_time_unix_nano,
                            instrumentation_scope=scope,
                        )
                    )
    return result


@dataclass(frozen=True)
class LogLine:
    """One exported log record, flattened for printing."""

    service: str
    time_ns: int
    severity: str
    body: str
    trace_id: str  # 32 hex digits, '' outside a trace
    span_id: str
    attributes: dict[str, Any]


def log_lines(requests: Iterable[logs_service_pb2.ExportLogsServiceRequest]) -> list[LogLine]:
    """Every log record of the export requests, oldest first."""
    result = []
    for request in requests:
        for resource_logs in request.resource_logs:
            service = str(_attributes(resource_logs.resource.attributes).get(SERVICE_NAME, "unknown_service"))
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    body = any_value(record.body)
                    result.append(
                        LogLine(
                            service=service,
                            time_ns=record.time_unix_nano or record.observed_time_unix_nano,
                            severity=record.severity_text or "",
                            body=body if isinstance(body, str) else repr(body),
                            trace_id=record.trace_id.hex() if any(record.trace_id) else "",
                            span_id=record.span_id.hex() if any(record.span_id) else "",
                            attributes=_attributes(record.attributes),
                        )
                    )
    result.sort(key=lambda line: line.time_ns)
    return result
