"""veil.configure() exporting OTLP (gRPC and HTTP) to a real Jaeger v2: the trace read back from Jaeger's query
API matches what was recorded, field by field; the UI's view (api/traces) maps status, kinds and links as the
docs say; nothing the redactor removes reaches Jaeger."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import veil
from tests.peers.otlp_json import StoredSpan, attributes, wait_for_spans
from tests.peers.servers import get_json
from tests.peers.trace import SCOPE, SECRETS, SentTrace, make_trace, span_id, trace_id
from veil.demo.jaeger import LocalJaeger

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

REDACTION_COUNT = "veil.redaction.count"
# OTLP's enum: SPAN_KIND_INTERNAL = 1 ... SPAN_KIND_CONSUMER = 5; the SDK's SpanKind starts at 0.
_OTLP_STATUS = {StatusCode.UNSET: None, StatusCode.OK: 1, StatusCode.ERROR: 2}


def _plain(value: Any) -> Any:
    """Attribute values as the query API decodes them (sequences as tuples)."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _without_redacted(values: dict[str, Any], redacted: set[str]) -> dict[str, Any]:
    return {key: _plain(value) for key, value in values.items() if key not in redacted and key != REDACTION_COUNT}


def _redacted_keys(values: dict[str, Any]) -> set[str]:
    return {key for key, value in values.items() if isinstance(value, str) and "[REDACTED" in value}


def _export(
    configure_veil: Callable[..., veil.Telemetry],
    jaeger: LocalJaeger,
    protocol: str,
    service: str,
    exporter: str = "otlp",
) -> tuple[veil.Telemetry, SentTrace]:
    endpoint = jaeger.otlp_grpc_endpoint if protocol == "grpc" else jaeger.otlp_http_endpoint
    telemetry = configure_veil(
        service_name=service,
        traces_exporter=exporter,
        metrics_exporter="none",
        logs_exporter="none",
        otlp_endpoint=endpoint,
        otlp_protocol=protocol,
        resource_attributes={"deployment.environment.name": "peer-tests", "team": "checkout"},
        bsp_schedule_delay_millis=50,
    )
    assert telemetry.tracer_provider is not None
    sent = make_trace(telemetry.tracer_provider.get_tracer(*SCOPE))
    assert telemetry.force_flush(10_000)
    health = telemetry.health().traces
    assert (health.exported, health.failed, health.dropped) == (6, 0, 0), health
    return telemetry, sent


def _check_span(sent: ReadableSpan, stored: StoredSpan) -> None:
    span = stored.span
    assert sent.context is not None and sent.start_time is not None and sent.end_time is not None
    assert span["traceId"] == trace_id(sent)
    assert span["name"] == sent.name
    assert span["kind"] == sent.kind.value + 1
    assert span.get("parentSpanId", "") == (format(sent.parent.span_id, "016x") if sent.parent else "")
    assert int(span["startTimeUnixNano"]) == sent.start_time
    assert int(span["endTimeUnixNano"]) == sent.end_time
    assert stored.scope == {"name": SCOPE[0], "version": SCOPE[1]}

    sent_attributes = dict(sent.attributes or {})
    stored_attributes = stored.attributes
    redacted = _redacted_keys(stored_attributes)
    assert _without_redacted(stored_attributes, redacted) == _without_redacted(sent_attributes, redacted)

    stored_events = span.get("events", [])
    assert [event["name"] for event in stored_events] == [event.name for event in sent.events]
    for sent_event, stored_event in zip(sent.events, stored_events, strict=True):
        assert int(stored_event["timeUnixNano"]) == sent_event.timestamp
        event_attributes = attributes(stored_event.get("attributes"))
        event_redacted = _redacted_keys(event_attributes)
        redacted |= event_redacted
        assert _without_redacted(event_attributes, event_redacted) == _without_redacted(
            dict(sent_event.attributes or {}), event_redacted
        )

    stored_links = span.get("links", [])
    assert len(stored_links) == len(sent.links)
    for sent_link, stored_link in zip(sent.links, stored_links, strict=True):
        assert stored_link["traceId"] == format(sent_link.context.trace_id, "032x")
        assert stored_link["spanId"] == format(sent_link.context.span_id, "016x")
        assert attributes(stored_link.get("attributes")) == dict(sent_link.attributes or {})

    status = span.get("status", {})
    assert status.get("code") == _OTLP_STATUS[sent.status.status_code]
    assert status.get("message") == sent.status.description

    # Every redacted value is counted on its span, and nothing else was touched.
    assert stored_attributes.get(REDACTION_COUNT, 0) == len(redacted)


@pytest.mark.parametrize(("exporter", "protocol"), [("otlp", "grpc"), ("otlp", "http/protobuf"), ("jaeger", "grpc")])
def test_a_trace_reads_back_from_jaeger_field_by_field(
    configure_veil: Callable[..., veil.Telemetry], jaeger: LocalJaeger, exporter: str, protocol: str
) -> None:
    service = f"peer-{exporter}-{protocol.split('/', maxsplit=1)[0]}"
    telemetry, sent = _export(configure_veil, jaeger, protocol, service, exporter)

    stored = wait_for_spans(jaeger.ui_url, sent.trace_id, len(sent.spans))
    assert sorted(stored) == sorted(span_id(span) for span in sent.spans)
    for span in sent.spans:
        _check_span(span, stored[span_id(span)])
    linked = wait_for_spans(jaeger.ui_url, trace_id(sent.linked), 1)
    _check_span(sent.linked, linked[span_id(sent.linked)])

    # The resource, attribute by attribute (service, environment, host, process, SDK, distro).
    assert telemetry.tracer_provider is not None
    expected_resource = {key: _plain(value) for key, value in telemetry.tracer_provider.resource.attributes.items()}
    assert {key: _plain(value) for key, value in stored[span_id(sent.spans[0])].resource.items()} == expected_resource
    assert expected_resource["service.name"] == service
    assert expected_resource["team"] == "checkout"

    # What the redactor removed is marked, and the raw values are nowhere in what Jaeger serves.
    root = stored[span_id(sent.spans[0])]
    assert _redacted_keys(root.attributes) == {"payment.card_number"}
    consumer = stored[span_id(sent.by_name("process orders"))]
    assert consumer.attributes[REDACTION_COUNT] == 1
    served = json.dumps(get_json(f"{jaeger.ui_url}/api/v3/traces/{sent.trace_id}"))
    served += json.dumps(get_json(f"{jaeger.ui_url}/api/traces/{sent.trace_id}"))
    assert not [secret for secret in SECRETS if secret in served]


def _tags(span: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    return {tag["key"]: (tag["type"], tag["value"]) for tag in span.get("tags", [])}


def test_what_the_jaeger_ui_shows(configure_veil: Callable[..., veil.Telemetry], jaeger: LocalJaeger) -> None:
    """The UI reads /api/traces/{id} (Jaeger's own JSON model): how OTLP status, kinds, typed and array
    attributes, events and links look there."""
    service = "peer-ui-view"
    _, sent = _export(configure_veil, jaeger, "http/protobuf", service)
    wait_for_spans(jaeger.ui_url, sent.trace_id, len(sent.spans))
    document = get_json(f"{jaeger.ui_url}/api/traces/{sent.trace_id}")
    (trace,) = document["data"]
    assert {process["serviceName"] for process in trace["processes"].values()} == {service}
    spans = {span["operationName"]: span for span in trace["spans"]}
    assert set(spans) == {span.name for span in sent.spans}
    root, client = spans["POST /checkout"], spans["POST"]

    root_tags = _tags(root)
    assert root_tags["span.kind"] == ("string", "server")
    assert root_tags["otel.status_code"] == ("string", "OK")
    assert "error" not in root_tags
    assert root_tags["http.response.status_code"] == ("int64", 201)
    assert root_tags["shop.express"] == ("bool", True)
    assert root_tags["shop.discount"] == ("float64", 0.15)
    # Arrays have no Jaeger tag type: they become JSON text.
    assert root_tags["shop.skus"] == ("string", '["book","lamp"]')
    assert root_tags["shop.quantities"] == ("string", "[1,3]")
    assert root_tags["otel.scope.name"] == ("string", SCOPE[0])
    assert root["references"] == []

    client_tags = _tags(client)
    assert client_tags["span.kind"] == ("string", "client")
    assert client_tags["error"] == ("bool", True)  # what makes the UI paint the span red
    assert client_tags["otel.status_code"] == ("string", "ERROR")
    assert client_tags["otel.status_description"] == ("string", "payments timed out")
    references = {(reference["refType"], reference["spanID"]) for reference in client["references"]}
    # The parent is CHILD_OF; the link becomes a FOLLOWS_FROM reference, without its attributes.
    assert references == {("CHILD_OF", span_id(sent.spans[0])), ("FOLLOWS_FROM", span_id(sent.linked))}
    (log,) = client["logs"]
    fields = {field["key"]: field["value"] for field in log["fields"]}
    assert fields["event"] == "exception"
    assert fields["exception.type"] == "TimeoutError"
    assert fields["exception.message"] == "payments did not answer within 10 ms"

    internal_tags = _tags(spans["price basket"])
    assert internal_tags["span.kind"] == ("string", "internal")
    assert "otel.status_code" not in internal_tags and "error" not in internal_tags  # UNSET: no status tag
    assert _tags(spans["publish orders"])["span.kind"] == ("string", "producer")
    assert _tags(spans["process orders"])["span.kind"] == ("string", "consumer")
