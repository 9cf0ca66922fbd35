"""veil's Zipkin exporter to a real Zipkin 3 server and into Jaeger's Zipkin receiver: the trace read back
matches the OpenTelemetry-to-Zipkin mapping, and Zipkin's own API (what its UI queries) finds it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import veil
from tests.peers.otlp_json import wait_for_spans
from tests.peers.servers import LocalZipkin, get_json, wait_for
from tests.peers.trace import SCOPE, SECRETS, SentTrace, make_trace, span_id
from veil.demo.jaeger import LocalJaeger

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

_KINDS = {SpanKind.SERVER: "SERVER", SpanKind.CLIENT: "CLIENT", SpanKind.PRODUCER: "PRODUCER"}
_KINDS[SpanKind.CONSUMER] = "CONSUMER"


def _tag(value: Any) -> str:
    """The mapping's tag text: booleans lower case, numbers as written, arrays as compact JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"))
    return str(value)


def _export(
    configure_veil: Callable[..., veil.Telemetry], endpoint: str, service: str
) -> tuple[veil.Telemetry, SentTrace]:
    telemetry = configure_veil(
        service_name=service,
        traces_exporter="zipkin",
        metrics_exporter="none",
        logs_exporter="none",
        zipkin_endpoint=endpoint,
        resource_attributes={"deployment.environment.name": "peer-tests"},
        bsp_schedule_delay_millis=50,
    )
    assert telemetry.tracer_provider is not None
    sent = make_trace(telemetry.tracer_provider.get_tracer(*SCOPE))
    assert telemetry.force_flush(10_000)
    health = telemetry.health().traces
    assert (health.exported, health.failed, health.dropped) == (6, 0, 0), health
    return telemetry, sent


def zipkin_trace(zipkin: LocalZipkin, trace_id: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The trace's spans from GET /api/v2/trace/{id} once at least `count` are there (or after `timeout`)."""
    spans: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal spans
        spans = get_json(f"{zipkin.url}/api/v2/trace/{trace_id}") or []
        return len(spans) >= count

    wait_for(enough, timeout, interval=0.2)
    return spans


def _annotation(value: str) -> tuple[str, dict[str, Any]]:
    """`"name":{attributes}` (the mapping's annotation text) back into the name and the attributes."""
    ((name, attributes),) = json.loads("{" + value + "}").items()
    return name, attributes


def _expected_tags(telemetry: veil.Telemetry, span: ReadableSpan) -> dict[str, str]:
    assert telemetry.tracer_provider is not None
    tags = {key: _tag(value) for key, value in telemetry.tracer_provider.resource.attributes.items()}
    del tags["service.name"]  # it is the localEndpoint's serviceName instead
    tags.update({key: _tag(value) for key, value in (span.attributes or {}).items()})
    tags["otel.scope.name"] = tags["otel.library.name"] = SCOPE[0]
    tags["otel.scope.version"] = tags["otel.library.version"] = SCOPE[1]
    if span.status.status_code is StatusCode.ERROR:
        tags["otel.status_code"] = "ERROR"
        tags["error"] = span.status.description or ""
    elif span.status.status_code is StatusCode.OK:
        tags["otel.status_code"] = "OK"
    return tags


def test_the_zipkin_server_stores_what_the_mapping_says(
    configure_veil: Callable[..., veil.Telemetry], zipkin: LocalZipkin
) -> None:
    service = "Peer-Zipkin"  # Zipkin's names are lower case: the exporter sends "peer-zipkin"
    telemetry, sent = _export(configure_veil, zipkin.spans_endpoint, service)

    stored_list = zipkin_trace(zipkin, sent.trace_id, len(sent.spans))
    stored = {span["id"]: span for span in stored_list}
    assert sorted(stored) == sorted(span_id(span) for span in sent.spans)
    redacted_total = 0
    for span in sent.spans:
        assert span.start_time is not None and span.end_time is not None
        item = stored[span_id(span)]
        assert item["traceId"] == sent.trace_id
        assert item.get("parentId") == (format(span.parent.span_id, "016x") if span.parent else None)
        assert item["name"] == span.name.lower()
        assert item.get("kind") == _KINDS.get(span.kind)  # INTERNAL: no kind
        assert item["timestamp"] == span.start_time // 1000
        assert item["duration"] == max(1, (span.end_time - span.start_time) // 1000)
        assert item["localEndpoint"] == {"serviceName": service.lower()}
        assert item.get("remoteEndpoint") == (
            {"serviceName": "payments", "port": 8082} if span.name == "POST" else None
        )

        tags = dict(item["tags"])
        redacted = {key for key, value in tags.items() if "[REDACTED" in value}
        count = int(tags.pop("veil.redaction.count", "0"))
        expected = _expected_tags(telemetry, span)
        assert {key: value for key, value in tags.items() if key not in redacted} == {
            key: value for key, value in expected.items() if key not in redacted
        }

        annotations = item.get("annotations", [])
        assert len(annotations) == len(span.events)
        for event, annotation in zip(span.events, annotations, strict=True):
            assert annotation["timestamp"] == event.timestamp // 1000
            name, attributes = _annotation(annotation["value"])
            assert name == event.name
            event_redacted = {key for key, value in attributes.items() if "[REDACTED" in str(value)}
            redacted |= event_redacted
            sent_attributes = dict(event.attributes or {})
            assert {key: value for key, value in attributes.items() if key not in event_redacted} == {
                key: value for key, value in sent_attributes.items() if key not in event_redacted
            }
        assert count == len(redacted)
        redacted_total += count
    assert redacted_total == 2  # the card number (a tag) and the bearer token (in an annotation)

    # Zipkin's own queries, the ones its UI makes.
    assert service.lower() in get_json(f"{zipkin.url}/api/v2/services")
    names = get_json(f"{zipkin.url}/api/v2/spans?serviceName={service.lower()}")
    assert set(names) >= {span.name.lower() for span in sent.spans}
    assert get_json(f"{zipkin.url}/api/v2/remoteServices?serviceName={service.lower()}") == ["payments"]
    failed = get_json(f"{zipkin.url}/api/v2/traces?serviceName={service.lower()}&annotationQuery=error&limit=10")
    assert [trace[0]["traceId"] for trace in failed] == [sent.trace_id]  # the error tag marks the trace failed
    linked = get_json(f"{zipkin.url}/api/v2/trace/{format(sent.linked.context.trace_id, '032x')}")
    assert [span["name"] for span in linked] == ["nightly reconcile"]  # links have no Zipkin field
    served = json.dumps(stored_list)
    assert not [secret for secret in SECRETS if secret in served]


def test_jaegers_zipkin_receiver_takes_veils_zipkin_export(
    configure_veil: Callable[..., veil.Telemetry], jaeger: LocalJaeger
) -> None:
    service = "peer-zipkin-into-jaeger"
    telemetry, sent = _export(configure_veil, jaeger.zipkin_endpoint, service)
    stored = wait_for_spans(jaeger.ui_url, sent.trace_id, len(sent.spans))
    assert sorted(stored) == sorted(span_id(span) for span in sent.spans)
    assert telemetry.tracer_provider is not None
    for span in sent.spans:
        assert span.start_time is not None and span.end_time is not None
        item = stored[span_id(span)]
        assert item.resource["service.name"] == service
        # Zipkin has no resource: the receiver lifts the keys it knows (host.*, process.*, telemetry.*) back
        # into the resource and leaves the others as span attributes.
        assert item.resource["host.name"] == telemetry.tracer_provider.resource.attributes["host.name"]
        assert item.attributes["deployment.environment.name"] == "peer-tests"
        body = item.span
        assert body["name"] == span.name.lower()
        assert body.get("kind", 0) == (span.kind.value + 1 if span.kind is not SpanKind.INTERNAL else 0)
        assert body.get("parentSpanId", "") == (format(span.parent.span_id, "016x") if span.parent else "")
        # Zipkin carries microseconds.
        assert int(body["startTimeUnixNano"]) == span.start_time // 1000 * 1000
        assert (
            int(body["endTimeUnixNano"])
            == (span.start_time // 1000 + max(1, (span.end_time - span.start_time) // 1000)) * 1000
        )
        attributes = item.attributes
        # Tags are text; the receiver does not restore their types.
        if span.name == "POST /checkout":
            assert attributes["http.response.status_code"] == "201"
            assert attributes["shop.express"] == "true"
        # Events arrive named with the whole annotation text (the receiver does not split it again).
        events = [event["name"] for event in body.get("events", [])]
        assert [_annotation(text)[0] for text in events] == [event.name for event in span.events]
    client = stored[span_id(sent.by_name("POST"))]
    # The ERROR status survives, its description stays in the `error` attribute; OK arrives as unset.
    assert client.span["status"].get("code") == 2
    assert client.attributes["error"] == "payments timed out"
    assert stored[span_id(sent.spans[0])].span.get("status", {}).get("code") is None
    served = json.dumps(get_json(f"{jaeger.ui_url}/api/v3/traces/{sent.trace_id}"))
    assert not [secret for secret in SECRETS if secret in served]
