"""Reading Jaeger's query API: OTLP JSON (api/v3) decoded into plain Python values, spans indexed by id."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from tests.peers.servers import get_json, wait_for


def any_value(value: dict[str, Any]) -> Any:
    """An OTLP JSON AnyValue as the Python value an attribute was set with (arrays as tuples)."""
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return int(value["intValue"])  # int64 travels as a JSON string
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return tuple(any_value(item) for item in value["arrayValue"].get("values", []))
    if "kvlistValue" in value:
        return attributes(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None


def attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item["key"]: any_value(item.get("value", {})) for item in items or []}


@dataclass
class StoredSpan:
    """One span as Jaeger stored it, with its resource and scope."""

    span: dict[str, Any]
    resource: dict[str, Any]
    scope: dict[str, Any]

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.get("attributes"))


def stored_spans(query_url: str, trace_id: str) -> dict[str, StoredSpan]:
    """span id (hex) -> the stored span, from GET /api/v3/traces/{trace id}; {} when Jaeger has none."""
    document = get_json(f"{query_url}/api/v3/traces/{trace_id}")
    found: dict[str, StoredSpan] = {}
    for resource_spans in (document or {}).get("result", {}).get("resourceSpans", []):
        resource = attributes(resource_spans.get("resource", {}).get("attributes"))
        for scope_spans in resource_spans.get("scopeSpans", []):
            scope = scope_spans.get("scope", {})
            for span in scope_spans.get("spans", []):
                found[span["spanId"]] = StoredSpan(span, resource, scope)
    return found


def wait_for_spans(query_url: str, trace_id: str, count: int, timeout: float = 20.0) -> dict[str, StoredSpan]:
    """The trace's stored spans once at least `count` are there (or what there is after `timeout`)."""
    spans: dict[str, StoredSpan] = {}

    def enough() -> bool:
        nonlocal spans
        spans = stored_spans(query_url, trace_id)
        return len(spans) >= count

    wait_for(enough, timeout, interval=0.2)
    return spans
