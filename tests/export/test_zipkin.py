"""veil.export.zipkin.ZipkinExporter against a loopback collector and the Zipkin v2 API contract.

No Zipkin server runs here, so every body the exporter sends is checked by `zipkin_violations`, a validator
written from the Span definition of the published zipkin2-api.yaml (allowed fields, types, patterns, bounds)
plus the rules of the OpenTelemetry-to-Zipkin mapping specification.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes.peer_attributes import PEER_SERVICE
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS, CLIENT_PORT
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.fixtures.zipkin import PlannedResponse, ZipkinReceiver, unused_local_url, zipkin_receiver
from veil import _guard
from veil.errors import ConfigurationError
from veil.export.zipkin import ZipkinExporter

__all__ = ["zipkin_receiver", "zipkin_violations"]  # the fixture is re-exported for pytest

# ------------------------------------------------------------------------------------ the Zipkin v2 contract

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SPAN_FIELDS = {
    "traceId": str,
    "name": str,
    "parentId": str,
    "id": str,
    "kind": str,
    "timestamp": int,
    "duration": int,
    "debug": bool,
    "shared": bool,
    "localEndpoint": dict,
    "remoteEndpoint": dict,
    "annotations": list,
    "tags": dict,
}
_ENDPOINT_FIELDS = {"serviceName": str, "ipv4": str, "ipv6": str, "port": int}
_ANNOTATION_FIELDS = {"timestamp": int, "value": str}
_KINDS = {"CLIENT", "SERVER", "PRODUCER", "CONSUMER"}
_TRACE_ID = re.compile(r"[a-f0-9]{16,32}")
_SPAN_ID = re.compile(r"[a-f0-9]{16}")


def _type_ok(value: object, expected: type) -> bool:
    if expected is int:  # JSON integers only: a bool or a float is not an integer
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _fields(where: str, value: object, allowed: dict[str, type], problems: list[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        problems.append(f"{where}: not an object")
        return {}
    for key, item in value.items():
        if key not in allowed:
            problems.append(f"{where}.{key}: not a field of the definition")
        elif item is None:
            problems.append(f"{where}.{key}: null")
        elif not _type_ok(item, allowed[key]):
            problems.append(f"{where}.{key}: {item!r} is not {allowed[key].__name__}")
    return {key: item for key, item in value.items() if key in allowed and _type_ok(item, allowed[key])}


def _endpoint(where: str, value: object, problems: list[str], *, strict: bool) -> None:
    endpoint = _fields(where, value, _ENDPOINT_FIELDS, problems)
    if isinstance(value, dict) and not value and strict:
        problems.append(f"{where}: empty endpoint (omit it)")
    if "ipv4" in endpoint:
        try:
            ipaddress.IPv4Address(endpoint["ipv4"])
        except ValueError:
            problems.append(f"{where}.ipv4: {endpoint['ipv4']!r} is not an IPv4 address")
    if "ipv6" in endpoint:
        try:
            address = ipaddress.IPv6Address(endpoint["ipv6"])
        except ValueError:
            problems.append(f"{where}.ipv6: {endpoint['ipv6']!r} is not an IPv6 address")
        else:
            if strict and address.ipv4_mapped is not None:
                problems.append(f"{where}.ipv6: mapped IPv4 address belongs in ipv4")
    if "port" in endpoint and not 0 < endpoint["port"] < 65536:  # "please don't set to zero"
        problems.append(f"{where}.port: {endpoint['port']} is not a port")
    name = endpoint.get("serviceName")
    if strict and name is not None and (name != name.lower() or not name):
        problems.append(f"{where}.serviceName: {name!r} is not a lower-case label")


def zipkin_violations(body: object, *, strict: bool = True) -> list[str]:
    """Every way `body` breaks the Zipkin v2 ListOfSpans contract; empty when valid.

    The contract: a JSON array of Span objects; Span requires traceId and id and allows only traceId (16 or 32
    lower-case hex), name, parentId and id (16 lower-case hex), kind (CLIENT, SERVER, PRODUCER, CONSUMER),
    timestamp (int64 epoch microseconds), duration (int64 microseconds, minimum 1), debug and shared
    (booleans), localEndpoint and remoteEndpoint (Endpoint: serviceName string, ipv4, ipv6, port integer),
    annotations (unique items of {timestamp int64, value string}, both required) and tags (string values).
    Null is never a valid value. `strict` adds veil's own profile: 128-bit trace ids, lower-case names and
    service names, ports 1-65535, true-only debug/shared, and absent (never empty) endpoints, annotations
    and tags, as the OpenTelemetry mapping asks.
    """
    problems: list[str] = []
    if not isinstance(body, list):
        return ["body: not a JSON array (ListOfSpans)"]
    for index, raw in enumerate(body):
        where = f"span[{index}]"
        span = _fields(where, raw, _SPAN_FIELDS, problems)
        if not isinstance(raw, dict):
            continue
        for required in ("traceId", "id"):
            if required not in raw:
                problems.append(f"{where}.{required}: required but absent")
        trace_id = span.get("traceId")
        if trace_id is not None and not _TRACE_ID.fullmatch(trace_id):
            problems.append(f"{where}.traceId: {trace_id!r} is not 16-32 lower-case hex")
        if strict and trace_id is not None and len(trace_id) != 32:
            problems.append(f"{where}.traceId: {trace_id!r} is not 128-bit")
        for key in ("id", "parentId"):
            value = span.get(key)
            if value is not None and not _SPAN_ID.fullmatch(value):
                problems.append(f"{where}.{key}: {value!r} is not 16 lower-case hex")
        if "kind" in span and span["kind"] not in _KINDS:
            problems.append(f"{where}.kind: {span['kind']!r} is not one of {sorted(_KINDS)}")
        if "timestamp" in span and not _INT64_MIN <= span["timestamp"] <= _INT64_MAX:
            problems.append(f"{where}.timestamp: outside int64")
        if "duration" in span and not 1 <= span["duration"] <= _INT64_MAX:
            problems.append(f"{where}.duration: {span['duration']} is below the minimum of 1")
        if strict:
            for flag in ("debug", "shared"):
                if span.get(flag) is False:
                    problems.append(f"{where}.{flag}: sent as false (omit it)")
            name = span.get("name")
            if name is not None and (not name or name != name.lower()):
                problems.append(f"{where}.name: {name!r} is not a lower-case label")
        for key in ("localEndpoint", "remoteEndpoint"):
            if key in raw:
                _endpoint(f"{where}.{key}", raw[key], problems, strict=strict)
        if "annotations" in span:
            annotations = span["annotations"]
            if strict and not annotations:
                problems.append(f"{where}.annotations: empty (omit it)")
            seen: list[object] = []
            for position, annotation in enumerate(annotations):
                at = f"{where}.annotations[{position}]"
                checked = _fields(at, annotation, _ANNOTATION_FIELDS, problems)
                if isinstance(annotation, dict):
                    for required in ("timestamp", "value"):
                        if required not in annotation:
                            problems.append(f"{at}.{required}: required but absent")
                if "timestamp" in checked and not _INT64_MIN <= checked["timestamp"] <= _INT64_MAX:
                    problems.append(f"{at}.timestamp: outside int64")
                if annotation in seen:
                    problems.append(f"{at}: duplicate (annotations are uniqueItems)")
                seen.append(annotation)
        if "tags" in span:
            if strict and not span["tags"]:
                problems.append(f"{where}.tags: empty (omit it)")
            for key, value in span["tags"].items():
                if not isinstance(value, str):
                    problems.append(f"{where}.tags.{key}: {value!r} is not a string")
    return problems


def assert_valid(body: object) -> None:
    problems = zipkin_violations(body)
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def exporters() -> Iterator[list[ZipkinExporter]]:
    created: list[ZipkinExporter] = []
    yield created
    for exporter in created:
        exporter.shutdown()


@pytest.fixture
def make_exporter(exporters: list[ZipkinExporter]) -> Callable[..., ZipkinExporter]:
    def make(endpoint: str, **options: Any) -> ZipkinExporter:
        exporter = ZipkinExporter(endpoint, **options)
        exporters.append(exporter)
        return exporter

    return make


def traced_provider(
    exporter: ZipkinExporter, resource: Resource | None = None, span_limits: SpanLimits | None = None
) -> TracerProvider:
    provider = TracerProvider(
        resource=resource or Resource.create({SERVICE_NAME: "Checkout-API"}), span_limits=span_limits
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def finished_spans(count: int = 1) -> list[ReadableSpan]:
    """Real SDK spans, ended and not yet exported anywhere."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "orders"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.zipkin")
    for number in range(count):
        with tracer.start_as_current_span(f"work {number}"):
            pass
    return list(memory.get_finished_spans())


def by_name(receiver: ZipkinReceiver) -> dict[str, dict[str, Any]]:
    for request in receiver.requests:
        assert_valid(request.body)
    return {span["name"]: span for span in receiver.spans()}


# ------------------------------------------------------------------------------------------- the validator


def test_validator_accepts_the_spec_example() -> None:
    example = {
        "id": "352bff9a74ca9ad2",
        "traceId": "5af7183fb1d4cf5f",
        "parentId": "6b221d5bc9e6496c",
        "name": "get /api",
        "timestamp": 1556604172355737,
        "duration": 1431,
        "kind": "SERVER",
        "localEndpoint": {"serviceName": "backend", "ipv4": "192.168.99.1", "port": 3306},
        "remoteEndpoint": {"ipv4": "172.19.0.2", "port": 58648},
        "tags": {"http.method": "GET", "http.path": "/api"},
    }
    assert zipkin_violations([example], strict=False) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kind": None}, "kind: null"),
        ({"kind": "INTERNAL"}, "kind: 'INTERNAL'"),
        ({"duration": 0}, "below the minimum"),
        ({"traceId": "5AF7183FB1D4CF5F5AF7183FB1D4CF5F"}, "traceId"),
        ({"id": "352bff9a74ca9ad"}, "id"),
        ({"parentId": None}, "parentId: null"),
        ({"timestamp": 1.5}, "timestamp: 1.5 is not int"),
        ({"status": "ok"}, "status: not a field"),
        ({"tags": {"http.status_code": 200}}, "is not a string"),
        ({"tags": {}}, "tags: empty"),
        ({"annotations": [{"timestamp": 1, "value": "a"}, {"timestamp": 1, "value": "a"}]}, "duplicate"),
        ({"annotations": [{"value": "a"}]}, "timestamp: required"),
        ({"remoteEndpoint": {"ipv4": "example.com"}}, "not an IPv4 address"),
        ({"remoteEndpoint": {"port": 0}}, "not a port"),
        ({"localEndpoint": {"serviceName": "Backend"}}, "lower-case"),
        ({"shared": False}, "shared: sent as false"),
    ],
)
def test_validator_rejects_what_the_contract_forbids(change: dict[str, object], expected: str) -> None:
    span: dict[str, object] = {"traceId": "5af7183fb1d4cf5f5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2"}
    assert zipkin_violations([span]) == []
    span.update(change)
    problems = zipkin_violations([span])
    assert any(expected in problem for problem in problems), problems


# ----------------------------------------------------------------------------------------------- encoding


def test_span_tree_maps_ids_kinds_times_and_service(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    tracer = traced_provider(make_exporter(zipkin_receiver.url)).get_tracer("tests.zipkin", "1.2.3")
    with (
        tracer.start_as_current_span("GET /Orders", kind=SpanKind.SERVER) as root,
        tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as child,
        tracer.start_as_current_span("render") as leaf,
    ):
        pass
    spans = by_name(zipkin_receiver)
    assert set(spans) == {"get /orders", "get", "render"}
    root_json, child_json, leaf_json = spans["get /orders"], spans["get"], spans["render"]

    trace_id = format(root.get_span_context().trace_id, "032x")
    assert {span["traceId"] for span in spans.values()} == {trace_id}
    assert root_json["id"] == format(root.get_span_context().span_id, "016x")
    assert "parentId" not in root_json
    assert child_json["parentId"] == root_json["id"]
    assert leaf_json["parentId"] == child_json["id"] == format(child.get_span_context().span_id, "016x")
    assert leaf_json["id"] == format(leaf.get_span_context().span_id, "016x")

    assert root_json["kind"] == "SERVER"
    assert child_json["kind"] == "CLIENT"
    assert "kind" not in leaf_json  # INTERNAL: omitted, never null

    assert isinstance(root, ReadableSpan)
    assert root.start_time is not None
    assert root.end_time is not None
    assert root_json["timestamp"] == root.start_time // 1000
    assert root_json["duration"] == max(1, (root.end_time - root.start_time) // 1000)
    for span in spans.values():
        assert span["localEndpoint"] == {"serviceName": "checkout-api"}
        assert span["tags"]["otel.scope.name"] == span["tags"]["otel.library.name"] == "tests.zipkin"
        assert span["tags"]["otel.scope.version"] == span["tags"]["otel.library.version"] == "1.2.3"
        assert SERVICE_NAME not in span["tags"]
        assert "otel.status_code" not in span["tags"]  # UNSET is not reported
        assert "error" not in span["tags"]


def test_zero_duration_becomes_one_microsecond_and_times_truncate(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    tracer = traced_provider(make_exporter(zipkin_receiver.url)).get_tracer("tests.zipkin")
    start = 1_700_000_000_123_456_789
    tracer.start_span("instant", start_time=start).end(end_time=start)
    tracer.start_span("sub-micro", start_time=start).end(end_time=start + 999)
    tracer.start_span("long", start_time=start).end(end_time=start + 2_500_999)
    spans = by_name(zipkin_receiver)
    assert spans["instant"]["timestamp"] == 1_700_000_000_123_456
    assert spans["instant"]["duration"] == 1
    assert spans["sub-micro"]["duration"] == 1
    assert spans["long"]["duration"] == 2500


def test_events_become_unique_annotations(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    tracer = traced_provider(make_exporter(zipkin_receiver.url)).get_tracer("tests.zipkin")
    moment = 1_700_000_000_000_001_000
    with tracer.start_as_current_span("events") as span:
        span.add_event("retry", timestamp=moment)
        span.add_event("retry", timestamp=moment)  # identical: one annotation
        span.add_event("retry", timestamp=moment + 1000)  # another moment: kept
        span.add_event("cache miss", {"key": 'users:"1"', "hits": [1, 2], "hot": False}, timestamp=moment)
    annotations = by_name(zipkin_receiver)["events"]["annotations"]
    assert annotations == [
        {"timestamp": 1_700_000_000_000_001, "value": "retry"},
        {"timestamp": 1_700_000_000_000_002, "value": "retry"},
        {
            "timestamp": 1_700_000_000_000_001,
            "value": '"cache miss":{"key":"users:\\"1\\"","hits":[1,2],"hot":false}',
        },
    ]
    name, _, attributes = annotations[2]["value"].partition(":")
    assert json.loads(name) == "cache miss"
    assert json.loads(attributes) == {"key": 'users:"1"', "hits": [1, 2], "hot": False}


def test_span_without_events_or_tags_sends_neither(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    exporter = make_exporter(zipkin_receiver.url)
    provider = TracerProvider(resource=Resource({SERVICE_NAME: "bare"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("").start_span("bare").end()
    (span,) = by_name(zipkin_receiver).values()
    assert set(span) == {"traceId", "id", "name", "timestamp", "duration", "localEndpoint"}


def test_tags_are_strings_per_the_mapping(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    tracer = traced_provider(make_exporter(zipkin_receiver.url)).get_tracer("tests.zipkin")
    with tracer.start_as_current_span("tagged") as span:
        span.set_attributes(
            {
                "flag.on": True,
                "flag.off": False,
                "count": 42,
                "negative": -7,
                "ratio": 1.5,
                "big": 1e20,
                "text": "héllo",
                "words": ["a", 'b"c'],
                "flags": [True, False],
                "numbers": [1, 2, 3],
                "floats": [0.5, 2.0],
                "empty.list": [],
            }
        )
    tags = by_name(zipkin_receiver)["tagged"]["tags"]
    assert tags["flag.on"] == "true"
    assert tags["flag.off"] == "false"
    assert tags["count"] == "42"
    assert tags["negative"] == "-7"
    assert tags["ratio"] == "1.5"
    assert tags["big"] == "1e+20"
    assert tags["text"] == "héllo"
    assert tags["words"] == '["a","b\\"c"]'
    assert tags["flags"] == "[true,false]"
    assert tags["numbers"] == "[1,2,3]"
    assert tags["floats"] == "[0.5,2.0]"
    assert tags["empty.list"] == "[]"


def test_resource_attributes_and_dropped_counts_become_tags(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    resource = Resource({SERVICE_NAME: "Billing", "service.namespace": "shop", "deployment.id": 7})
    exporter = make_exporter(zipkin_receiver.url)
    provider = traced_provider(exporter, resource, SpanLimits(max_span_attributes=2, max_events=1))
    tracer = provider.get_tracer("tests.zipkin")
    with tracer.start_as_current_span("limited") as span:
        span.set_attributes({"a": 1, "b": 2, "c": 3, "deployment.id": "span wins"})
        span.add_event("first")
        span.add_event("second")
    tags = by_name(zipkin_receiver)["limited"]["tags"]
    assert by_name(zipkin_receiver)["limited"]["localEndpoint"] == {"serviceName": "billing"}
    assert tags["service.namespace"] == "shop"  # the spec: a tag, never part of the service name
    assert "service.name" not in tags
    assert tags["otel.dropped_attributes_count"] == "2"
    assert tags["otel.dropped_events_count"] == "1"
    assert "otel.dropped_links_count" not in tags  # only when non-zero


def test_local_service_name_override_and_missing_service_name(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    overridden = traced_provider(make_exporter(zipkin_receiver.url, local_service_name="Edge-Proxy"))
    overridden.get_tracer("t").start_span("one").end()
    anonymous = TracerProvider(resource=Resource({}))
    anonymous.add_span_processor(SimpleSpanProcessor(make_exporter(zipkin_receiver.url)))
    anonymous.get_tracer("t").start_span("two").end()
    spans = by_name(zipkin_receiver)
    assert spans["one"]["localEndpoint"] == {"serviceName": "edge-proxy"}
    assert spans["two"]["localEndpoint"] == {"serviceName": "unknown_service"}


@pytest.mark.parametrize(
    ("description", "expected_error"),
    [("card declined", "card declined"), (None, "")],
)
def test_error_status_sets_error_and_status_code_tags(
    zipkin_receiver: ZipkinReceiver,
    make_exporter: Callable[..., ZipkinExporter],
    description: str | None,
    expected_error: str,
) -> None:
    tracer = traced_provider(make_exporter(zipkin_receiver.url)).get_tracer("tests.zipkin")
    with tracer.start_as_current_span("failing") as span:
        span.set_attribute("error", "false")  # the status decides, not a stray attribute
        span.set_status(Status(StatusCode.ERROR, description))
    tags = by_name(zipkin_receiver)["failing"]["tags"]
    assert tags["otel.status_code"] == "ERROR"
    assert tags["error"] == expected_error
    assert "otel.status_description" not in tags  # the Zipkin rule puts the description in `error`


def test_ok_and_unset_status_never_send_an_error_tag(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    tracer = traced_provider(make_exporter(zipkin_receiver.url)).get_tracer("tests.zipkin")
    with tracer.start_as_current_span("fine") as span:
        span.set_attribute("error", False)
        span.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span("unset") as span:
        span.set_attribute("error", "false")
        span.set_attribute("otel.status_code", "OK")
    spans = by_name(zipkin_receiver)
    assert spans["fine"]["tags"]["otel.status_code"] == "OK"
    assert "error" not in spans["fine"]["tags"]
    assert "error" not in spans["unset"]["tags"]
    assert "otel.status_code" not in spans["unset"]["tags"]


def test_remote_endpoint_from_semantic_conventions(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    tracer = traced_provider(make_exporter(zipkin_receiver.url)).get_tracer("tests.zipkin")
    attributes_by_span: list[tuple[str, SpanKind, dict[str, Any]]] = [
        (
            "client host and socket",
            SpanKind.CLIENT,
            {SERVER_ADDRESS: "API.example.com", SERVER_PORT: 8443, NETWORK_PEER_ADDRESS: "10.1.2.3"},
        ),
        ("client peer service", SpanKind.CLIENT, {PEER_SERVICE: "Inventory", SERVER_ADDRESS: "10.0.0.9"}),
        (
            "client ip literal",
            SpanKind.CLIENT,
            {SERVER_ADDRESS: "::ffff:192.0.2.1", SERVER_PORT: 80, NETWORK_PEER_PORT: 0},
        ),
        (
            "server",
            SpanKind.SERVER,
            {
                SERVER_ADDRESS: "this-host",
                SERVER_PORT: 8080,
                CLIENT_ADDRESS: "2001:DB8::1",
                CLIENT_PORT: 51234,
            },
        ),
        (
            "server via peer",
            SpanKind.SERVER,
            {NETWORK_PEER_ADDRESS: "198.51.100.7", NETWORK_PEER_PORT: 40000, SERVER_ADDRESS: "this-host"},
        ),
        ("producer", SpanKind.PRODUCER, {SERVER_ADDRESS: "broker", SERVER_PORT: 9092}),
        ("consumer port zero", SpanKind.CONSUMER, {SERVER_ADDRESS: "broker", SERVER_PORT: 0}),
        ("internal", SpanKind.INTERNAL, {SERVER_ADDRESS: "db.local", SERVER_PORT: 5432}),
        ("client unknown peer", SpanKind.CLIENT, {"http.request.method": "GET"}),
    ]
    for name, kind, attributes in attributes_by_span:
        tracer.start_span(name, kind=kind, attributes=attributes).end()
    spans = by_name(zipkin_receiver)
    assert spans["client host and socket"]["remoteEndpoint"] == {
        "serviceName": "api.example.com",
        "ipv4": "10.1.2.3",
        "port": 8443,
    }
    assert spans["client peer service"]["remoteEndpoint"] == {"serviceName": "inventory", "ipv4": "10.0.0.9"}
    assert spans["client ip literal"]["remoteEndpoint"] == {"ipv4": "192.0.2.1", "port": 80}
    assert spans["server"]["remoteEndpoint"] == {"ipv6": "2001:db8::1", "port": 51234}
    assert spans["server via peer"]["remoteEndpoint"] == {"ipv4": "198.51.100.7", "port": 40000}
    assert spans["producer"]["remoteEndpoint"] == {"serviceName": "broker", "port": 9092}
    assert spans["consumer port zero"]["remoteEndpoint"] == {"serviceName": "broker"}
    assert "remoteEndpoint" not in spans["internal"]
    assert "remoteEndpoint" not in spans["client unknown peer"]


# ---------------------------------------------------------------------------------------------- transport


def test_gzip_json_post_with_custom_headers(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    exporter = make_exporter(zipkin_receiver.url, headers={"Authorization": "Bearer t0ken"})
    assert exporter.export(finished_spans(3)) is SpanExportResult.SUCCESS
    (request,) = zipkin_receiver.requests
    assert request.method == "POST"
    assert request.path == "/api/v2/spans"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["authorization"] == "Bearer t0ken"
    assert request.headers["user-agent"].startswith("veil/")
    assert request.raw_body[:2] == b"\x1f\x8b"
    assert json.loads(gzip.decompress(request.raw_body)) == request.body
    assert len(request.body) == 3
    assert_valid(request.body)


def test_uncompressed_when_compression_is_off(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    exporter = make_exporter(zipkin_receiver.url, compression=None)
    assert exporter.export(finished_spans()) is SpanExportResult.SUCCESS
    (request,) = zipkin_receiver.requests
    assert "content-encoding" not in request.headers
    assert json.loads(request.raw_body) == request.body
    assert_valid(request.body)


def test_one_client_is_reused_across_exports(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    exporter = make_exporter(zipkin_receiver.url)
    for _ in range(3):
        assert exporter.export(finished_spans()) is SpanExportResult.SUCCESS
    assert len(zipkin_receiver.requests) == 3
    assert exporter.export([]) is SpanExportResult.SUCCESS
    assert len(zipkin_receiver.requests) == 3  # nothing to send, nothing sent


def test_retries_503_then_succeeds(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    zipkin_receiver.respond(503, 503, 202)
    exporter = make_exporter(zipkin_receiver.url)
    assert exporter.export(finished_spans(2)) is SpanExportResult.SUCCESS
    requests = zipkin_receiver.requests
    assert len(requests) == 3
    assert requests[0].raw_body == requests[1].raw_body == requests[2].raw_body
    assert requests[1].received_at > requests[0].received_at  # a backoff wait separates attempts


def test_retry_after_is_honoured(zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]) -> None:
    zipkin_receiver.respond(PlannedResponse(429, retry_after="1"), 202)
    exporter = make_exporter(zipkin_receiver.url)
    assert exporter.export(finished_spans()) is SpanExportResult.SUCCESS
    first, second = zipkin_receiver.requests
    # Without Retry-After the first backoff is at most 0.5 s; the server asked for 1 s.
    assert second.received_at - first.received_at >= 0.95


def test_retry_after_beyond_the_budget_gives_up_at_once(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    zipkin_receiver.respond(PlannedResponse(503, retry_after="120"))
    exporter = make_exporter(zipkin_receiver.url, max_retry_seconds=5)
    started = time.monotonic()
    assert exporter.export(finished_spans()) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 4  # did not sleep towards the 5 s budget, let alone 120 s
    assert len(zipkin_receiver.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 413, 501])
def test_client_errors_are_not_retried(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter], status: int
) -> None:
    zipkin_receiver.respond(status, 202)
    exporter = make_exporter(zipkin_receiver.url)
    assert exporter.export(finished_spans()) is SpanExportResult.FAILURE
    assert len(zipkin_receiver.requests) == 1


def test_total_retry_time_is_bounded(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    zipkin_receiver.respond(*[503] * 100)
    exporter = make_exporter(zipkin_receiver.url, max_retry_seconds=1.5)
    started = time.monotonic()
    assert exporter.export(finished_spans()) is SpanExportResult.FAILURE
    elapsed = time.monotonic() - started
    assert elapsed < 1.5 + 1.0  # the budget plus a wide margin for the last attempt
    assert 2 <= len(zipkin_receiver.requests) < 10  # retried, with backoff rather than a hot loop


def test_slow_collector_times_out(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    zipkin_receiver.respond(PlannedResponse(202, delay=3.0))
    exporter = make_exporter(zipkin_receiver.url, timeout=0.3, max_retry_seconds=0)
    started = time.monotonic()
    assert exporter.export(finished_spans()) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 2.5


def test_dead_endpoint_fails_quietly_with_one_clear_log_line(
    make_exporter: Callable[..., ZipkinExporter], caplog: pytest.LogCaptureFixture
) -> None:
    _guard.reset_for_tests()
    url = unused_local_url().replace("http://", "http://user:s3cret@")
    exporter = make_exporter(url, max_retry_seconds=0.5)
    caplog.set_level(logging.WARNING, logger="veil")
    started = time.monotonic()
    assert exporter.export(finished_spans()) is SpanExportResult.FAILURE
    assert exporter.export(finished_spans()) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 5
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("veil")]
    assert len(lines) == 1, lines  # rate limited: the second failure is not logged again
    assert "Zipkin export to http://127.0.0.1:" in lines[0]
    assert "ConnectError" in lines[0]
    assert "s3cret" not in lines[0]


def test_shutdown_stops_exports_and_interrupts_retries(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    zipkin_receiver.respond(*[PlannedResponse(503, retry_after="20")] * 5)
    exporter = make_exporter(zipkin_receiver.url, max_retry_seconds=30)
    results: list[SpanExportResult] = []
    worker = threading.Thread(target=lambda: results.append(exporter.export(finished_spans())))
    worker.start()
    assert len(zipkin_receiver.wait_for_requests(1)) == 1
    started = time.monotonic()
    exporter.shutdown()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert time.monotonic() - started < 5  # woke from the 20 s wait instead of sleeping through it
    assert results == [SpanExportResult.FAILURE]

    assert exporter.export(finished_spans()) is SpanExportResult.FAILURE
    assert len(zipkin_receiver.requests) == 1
    assert exporter.force_flush() is True
    exporter.shutdown()  # a second shutdown is harmless


def test_export_is_not_traced_by_http_instrumentation(
    zipkin_receiver: ZipkinReceiver, make_exporter: Callable[..., ZipkinExporter]
) -> None:
    from veil.instrumentation.httpx import HTTPXInstrumentor

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = HTTPXInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        exporter = make_exporter(zipkin_receiver.url)
        assert exporter.export(finished_spans()) is SpanExportResult.SUCCESS
        assert memory.get_finished_spans() == ()
        with httpx.Client() as client:  # the instrumentation is live: an ordinary call is traced
            client.get(zipkin_receiver.url)
        assert len(memory.get_finished_spans()) == 1
    finally:
        instrumentor.uninstrument()


@pytest.mark.parametrize(
    ("options", "variable"),
    [
        ({"endpoint": "localhost:9411/api/v2/spans"}, "endpoint"),
        ({"endpoint": "ftp://zipkin/api/v2/spans"}, "endpoint"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"compression": "brotli"}, "compression"),
        ({"max_retry_seconds": -1}, "max_retry_seconds"),
    ],
)
def test_configuration_mistakes_raise_at_construction(options: dict[str, Any], variable: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ZipkinExporter(**options)
    assert caught.value.variable == variable
