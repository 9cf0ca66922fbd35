"""Zipkin v2 JSON span exporter over one reused httpx client, with no protobuf dependency.

Every body is a JSON list of spans that validates against the Span definition of the published Zipkin v2 API
(zipkin2-api.yaml): only fields the definition allows, no nulls, absent rather than empty. The OpenTelemetry
mapping follows the "OpenTelemetry to Zipkin Transformation" specification (status, attributes, events,
scope and dropped counts) and the generic "mapping to non-OTLP" rules it builds on.

Failed sends are retried with exponential backoff and jitter (429 and 5xx responses, connection errors and
timeouts), honouring Retry-After, within `max_retry_seconds` and never past `shutdown()`. Export never raises.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import logging
import math
import random
import threading
import time
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.semconv._incubating.attributes.db_attributes import DB_NAME
from opentelemetry.semconv._incubating.attributes.net_attributes import (
    NET_PEER_IP,
    NET_PEER_NAME,
    NET_PEER_PORT,
    NET_SOCK_PEER_ADDR,
    NET_SOCK_PEER_NAME,
    NET_SOCK_PEER_PORT,
)
from opentelemetry.semconv._incubating.attributes.otel_attributes import (
    OTEL_LIBRARY_NAME,
    OTEL_LIBRARY_VERSION,
)
from opentelemetry.semconv._incubating.attributes.peer_attributes import PEER_SERVICE
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS, CLIENT_PORT
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT
from opentelemetry.semconv.attributes.otel_attributes import (
    OTEL_SCOPE_NAME,
    OTEL_SCOPE_VERSION,
    OTEL_STATUS_CODE,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from opentelemetry.trace import SpanKind, StatusCode

from veil._guard import log_once
from veil._version import __version__
from veil.errors import ConfigurationError

__all__ = ["DEFAULT_ENDPOINT", "ZipkinExporter"]

DEFAULT_ENDPOINT = "http://localhost:9411/api/v2/spans"

_logger = logging.getLogger("veil.export.zipkin")

# The Zipkin mapping puts the status description under this tag; Zipkin marks any span carrying it as failed.
_ERROR_TAG = "error"
# Keys fixed by the OpenTelemetry "mapping to non-OTLP" specification (semconv has no constants for them).
_DROPPED_ATTRIBUTES_TAG = "otel.dropped_attributes_count"
_DROPPED_EVENTS_TAG = "otel.dropped_events_count"
_DROPPED_LINKS_TAG = "otel.dropped_links_count"
# Used when the resource carries no service.name (the SDK default resource's value).
_UNKNOWN_SERVICE = "unknown_service"

_KINDS: dict[SpanKind, str] = {
    SpanKind.CLIENT: "CLIENT",
    SpanKind.SERVER: "SERVER",
    SpanKind.PRODUCER: "PRODUCER",
    SpanKind.CONSUMER: "CONSUMER",
}

# Where the other side of the connection is recorded, best first. A name attribute whose value is an IP
# literal counts as an address; an address attribute whose value is a host name counts as a name.
_OUTBOUND_NAMES = (PEER_SERVICE, SERVER_ADDRESS, NET_PEER_NAME, NET_SOCK_PEER_NAME, DB_NAME)
_OUTBOUND_ADDRESSES = (
    (SERVER_ADDRESS, SERVER_PORT),
    (NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT),
    (NET_SOCK_PEER_ADDR, NET_SOCK_PEER_PORT),
    (NET_PEER_IP, NET_PEER_PORT),
)
# For a SERVER span the remote side is the client; server.address is this host, never the peer.
_INBOUND_NAMES = (PEER_SERVICE, CLIENT_ADDRESS)
_INBOUND_ADDRESSES = (
    (CLIENT_ADDRESS, CLIENT_PORT),
    (NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT),
    (NET_SOCK_PEER_ADDR, NET_SOCK_PEER_PORT),
    (NET_PEER_IP, NET_PEER_PORT),
)
_NAME_PORTS = {SERVER_ADDRESS: SERVER_PORT, NET_PEER_NAME: NET_PEER_PORT, CLIENT_ADDRESS: CLIENT_PORT}

_COMPRESSIONS = ("gzip", "none")
_BACKOFF_INITIAL_SECONDS = 0.5
_BACKOFF_MAX_SECONDS = 8.0


# ------------------------------------------------------------------------------------------------- encoding


def _json_scalar(value: object) -> object:
    """An attribute value as a JSON-native value (non-finite floats become strings: JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_scalar(item) for item in value]
    return str(value)


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _tag_value(value: object) -> str:
    """A Zipkin tag value: strings as is, booleans lower case, numbers in invariant form, arrays as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return _dumps([_json_scalar(item) for item in value])
    return str(value)


def _ip_field(text: str) -> tuple[str, str] | None:
    """("ipv4" | "ipv6", normalised address) when `text` is an IP literal, else None."""
    candidate = text.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    candidate = candidate.split("%", 1)[0]  # a zone index is not part of the address
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:  # the spec prefers the ipv4 field for mapped addresses
            return "ipv4", str(mapped)
        return "ipv6", str(address)
    return "ipv4", str(address)


def _port(value: object) -> int | None:
    """A usable port (1-65535; the spec asks never to send zero) or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 < value < 65536:
        return value
    return None


def _remote_endpoint(kind: SpanKind, attributes: Mapping[str, object]) -> dict[str, object] | None:
    names, addresses = (
        (_INBOUND_NAMES, _INBOUND_ADDRESSES) if kind is SpanKind.SERVER else (_OUTBOUND_NAMES, _OUTBOUND_ADDRESSES)
    )
    endpoint: dict[str, object] = {}
    for key in names:
        value = attributes.get(key)
        if isinstance(value, str) and value.strip() and _ip_field(value) is None:
            endpoint["serviceName"] = value.strip().lower()
            port = _port(attributes.get(_NAME_PORTS.get(key, "")))
            if port is not None:
                endpoint["port"] = port
            break
    for address_key, port_key in addresses:
        value = attributes.get(address_key)
        if not isinstance(value, str):
            continue
        field = _ip_field(value)
        if field is None:
            continue
        endpoint[field[0]] = field[1]
        port = _port(attributes.get(port_key))
        if port is not None:
            endpoint["port"] = port
        break
    return endpoint or None


def _annotation_value(event: Event) -> str:
    """The event name, or per the Zipkin mapping `"name":{attributes as JSON}` when it has attributes."""
    if not event.attributes:
        return event.name
    attributes = {key: _json_scalar(value) for key, value in event.attributes.items()}
    return f"{_dumps(event.name)}:{_dumps(attributes)}"


class _ResourceView:
    """What one Resource contributes to every span: the local endpoint and the resource tags."""

    __slots__ = ("local_endpoint", "resource", "tags")

    def __init__(self, resource: Resource | None, local_service_name: str | None) -> None:
        self.resource = resource
        attributes: Mapping[str, object] = resource.attributes if resource is not None else {}
        service = local_service_name
        if not service:
            value = attributes.get(SERVICE_NAME)
            service = str(value) if value is not None and str(value).strip() else _UNKNOWN_SERVICE
        # Zipkin labels are lower case (the server lowercases them too); service.namespace stays a tag.
        self.local_endpoint: dict[str, object] = {"serviceName": service.strip().lower()}
        self.tags = {key: _tag_value(value) for key, value in attributes.items() if key != SERVICE_NAME}


def _encode_span(span: ReadableSpan, view: _ResourceView) -> dict[str, object] | None:
    context = span.context
    if context is None or not context.is_valid:
        return None
    encoded: dict[str, object] = {
        "traceId": format(context.trace_id, "032x"),
        "id": format(context.span_id, "016x"),
    }
    parent = span.parent
    if parent is not None and parent.is_valid:
        encoded["parentId"] = format(parent.span_id, "016x")
    if span.name:
        encoded["name"] = span.name.lower()
    kind = _KINDS.get(span.kind)
    if kind is not None:  # INTERNAL: the key is omitted, never null
        encoded["kind"] = kind
    if span.start_time is not None:
        encoded["timestamp"] = span.start_time // 1000
        if span.end_time is not None:
            encoded["duration"] = max(1, (span.end_time - span.start_time) // 1000)
    encoded["localEndpoint"] = view.local_endpoint
    attributes: Mapping[str, object] = span.attributes or {}
    if kind is not None:
        remote = _remote_endpoint(span.kind, attributes)
        if remote is not None:
            encoded["remoteEndpoint"] = remote

    annotations: list[dict[str, object]] = []
    seen: set[tuple[int, str]] = set()
    for event in span.events:
        timestamp = event.timestamp // 1000
        text = _annotation_value(event)
        if (timestamp, text) in seen:  # the spec requires unique annotations
            continue
        seen.add((timestamp, text))
        annotations.append({"timestamp": timestamp, "value": text})
    if annotations:
        encoded["annotations"] = annotations

    tags = dict(view.tags)
    for key, value in attributes.items():
        tags[key] = _tag_value(value)
    scope = span.instrumentation_scope
    if scope is not None and scope.name:
        tags[OTEL_SCOPE_NAME] = tags[OTEL_LIBRARY_NAME] = scope.name
        if scope.version:
            tags[OTEL_SCOPE_VERSION] = tags[OTEL_LIBRARY_VERSION] = scope.version
    for key, count in (
        (_DROPPED_ATTRIBUTES_TAG, span.dropped_attributes),
        (_DROPPED_EVENTS_TAG, span.dropped_events),
        (_DROPPED_LINKS_TAG, span.dropped_links),
    ):
        if count:
            tags[key] = str(count)
    status = span.status
    if status.status_code is StatusCode.ERROR:
        tags[OTEL_STATUS_CODE] = "ERROR"
        tags[_ERROR_TAG] = status.description or ""
    else:
        # Zipkin treats any span carrying `error` as failed, so only an ERROR status may set it.
        tags.pop(_ERROR_TAG, None)
        if status.status_code is StatusCode.OK:
            tags[OTEL_STATUS_CODE] = "OK"
        else:
            tags.pop(OTEL_STATUS_CODE, None)
    if tags:
        encoded["tags"] = tags
    return encoded


# -------------------------------------------------------------------------------------------------- sending


def _safe_endpoint(endpoint: str) -> str:
    """The endpoint for log lines: credentials and query removed."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _retry_after_seconds(response: httpx.Response) -> float | None:
    header = response.headers.get("retry-after")
    if not header:
        return None
    header = header.strip()
    try:
        seconds = float(header)  # the standard says whole seconds; tolerate a fraction
    except ValueError:
        pass
    else:
        return seconds if 0 <= seconds < math.inf else None
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - time.time())


def _retryable_status(status: int) -> bool:
    # 501 (not implemented) and 505 (version not supported) will not change on a retry.
    return status == 429 or (500 <= status < 600 and status not in (501, 505))


class ZipkinExporter(SpanExporter):
    """Export spans to a Zipkin v2 collector (`POST /api/v2/spans`) as JSON.

    Args:
        endpoint: the full spans URL, `http://localhost:9411/api/v2/spans` by default.
        timeout: seconds allowed for one HTTP attempt (connect, write, read each).
        headers: extra request headers (for example an authorization header for a gateway).
        compression: `"gzip"` (default) or `None` / `"none"`.
        max_retry_seconds: the budget for retries and their waits within one export call; 0 disables retries.
        local_service_name: overrides the resource's `service.name` as `localEndpoint.serviceName`.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        compression: str | None = "gzip",
        max_retry_seconds: float = 30.0,
        local_service_name: str | None = None,
    ) -> None:
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                "endpoint",
                endpoint,
                "an http:// or https:// URL such as " + DEFAULT_ENDPOINT,
            )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise ConfigurationError("timeout", timeout, "a positive number of seconds")
        if (
            isinstance(max_retry_seconds, bool)
            or not isinstance(max_retry_seconds, (int, float))
            or not 0 <= max_retry_seconds < math.inf
        ):
            raise ConfigurationError("max_retry_seconds", max_retry_seconds, "a number of seconds >= 0")
        normalised = (compression or "none").strip().lower() if isinstance(compression, (str, type(None))) else None
        if normalised not in _COMPRESSIONS:
            raise ConfigurationError("compression", compression, _COMPRESSIONS)
        self._endpoint = endpoint
        self._safe_endpoint = _safe_endpoint(endpoint)
        self._timeout = float(timeout)
        self._max_retry_seconds = float(max_retry_seconds)
        self._gzip = normalised == "gzip"
        self._local_service_name = local_service_name.strip() if local_service_name else None
        request_headers = {"User-Agent": f"veil/{__version__}"}
        request_headers.update(headers or {})
        request_headers["Content-Type"] = "application/json"
        if self._gzip:
            request_headers["Content-Encoding"] = "gzip"
        self._headers = request_headers
        self._client = httpx.Client(timeout=self._timeout, follow_redirects=False)
        self._shutdown = threading.Event()
        self._view: _ResourceView | None = None

    # -- SpanExporter --------------------------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown.is_set():
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            body = self._encode(spans)
        except Exception:
            log_once(
                "veil.export.zipkin.encode",
                "veil: could not encode %d span(s) for Zipkin; they are dropped",
                len(spans),
                exc_info=True,
                logger=_logger,
            )
            return SpanExportResult.FAILURE
        if body is None:
            return SpanExportResult.SUCCESS
        try:
            with suppress_instrumentation(), suppress_http_instrumentation():
                reason = self._send(body)
        except Exception as error:  # a bug or a client closed by shutdown mid-flight: never into user code
            reason = f"unexpected {type(error).__name__}: {error}"
        if reason is None:
            return SpanExportResult.SUCCESS
        log_once(
            f"veil.export.zipkin.failure:{self._safe_endpoint}",
            "veil: Zipkin export to %s failed: %s; %d span(s) dropped",
            self._safe_endpoint,
            reason,
            len(spans),
            logger=_logger,
        )
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        if self._shutdown.is_set():
            return
        self._shutdown.set()
        try:
            self._client.close()
        except Exception:
            log_once(
                "veil.export.zipkin.close",
                "veil: closing the Zipkin HTTP client failed",
                exc_info=True,
                logger=_logger,
            )

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Nothing is buffered here: every export call sends synchronously.
        return True

    # -- internals -----------------------------------------------------------------------------------------

    def _resource_view(self, resource: Resource | None) -> _ResourceView:
        view = self._view
        if view is None or view.resource is not resource:
            view = _ResourceView(resource, self._local_service_name)
            self._view = view  # one reference assignment: safe without a lock
        return view

    def _encode(self, spans: Sequence[ReadableSpan]) -> bytes | None:
        encoded: list[dict[str, object]] = []
        for span in spans:
            item = _encode_span(span, self._resource_view(span.resource))
            if item is not None:
                encoded.append(item)
        if not encoded:
            return None
        data = _dumps(encoded).encode("utf-8")
        return gzip.compress(data, compresslevel=6) if self._gzip else data

    def _send(self, body: bytes) -> str | None:
        """POST with retries; None on success, else the reason for the final failure."""
        deadline = time.monotonic() + self._max_retry_seconds
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            # The first attempt always gets the full timeout; retries never outlive the retry budget.
            timeout = self._timeout if attempt == 1 else min(self._timeout, remaining)
            retry_after: float | None = None
            try:
                response = self._client.post(self._endpoint, content=body, headers=self._headers, timeout=timeout)
            except httpx.TransportError as error:
                reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return None
                reason = f"HTTP {status} {response.reason_phrase}".rstrip()
                if not _retryable_status(status):
                    return f"{reason} (not retried)"
                retry_after = _retry_after_seconds(response)
            if self._shutdown.is_set():
                return f"{reason} (exporter shut down)"
            ceiling = min(_BACKOFF_MAX_SECONDS, _BACKOFF_INITIAL_SECONDS * 2 ** (attempt - 1))
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # "equal jitter": never a zero wait
            if retry_after is not None:  # the server's wish is a minimum, not a replacement for backoff
                delay = max(delay, retry_after)
            remaining = deadline - time.monotonic()
            if delay >= remaining:
                tried = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                if retry_after is not None and retry_after >= remaining:
                    return f"{reason} ({tried}; Retry-After {retry_after:g}s exceeds the retry budget)"
                return f"{reason} ({tried} in {self._max_retry_seconds:g}s retry budget)"
            if self._shutdown.wait(delay):
                return f"{reason} (exporter shut down)"
