"""The client core shared by httpx, requests, urllib3, urllib and aiohttp: starting the CLIENT span.

`ClientTelemetry` is built once per instrumentation or instrumented client (tracer, metric instruments,
options, hooks) and holds nothing about any request; `start()` begins the CLIENT span of one logical request
and returns its `ClientRequest`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.semconv._incubating.attributes.http_attributes import HTTP_URL
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import SpanKind
from opentelemetry.trace import TracerProvider as APITracerProvider

from veil._cache import remember
from veil._sdk import SUPPRESS_HTTP_INSTRUMENTATION_KEY, SUPPRESS_INSTRUMENTATION_KEY
from veil._version import __version__
from veil.instrumentation._http.client_request import ClientRequest, ClientShape
from veil.instrumentation._http.config import HTTPConfig, config_from_options
from veil.instrumentation._http.hooks import (
    AsyncRequestHook,
    AsyncResponseHook,
    RequestInfo,
    call_request_hook,
    joined_headers,
)
from veil.instrumentation._http.metrics import RequestMetrics, request_metrics
from veil.instrumentation._http.semconv import CACHE_LIMIT, SCHEMA_URL
from veil.instrumentation._http.wire import DEFAULT_PORTS, split_url

_CLIENT: Final = SpanKind.CLIENT
_CLEAN_URL_MAX_LENGTH: Final = 2048
"""Longer URLs are not remembered by the per-telemetry caches (they stay bounded in bytes, not only entries)."""


def client_http_enabled(current: otel_context.Context | None = None) -> bool:
    """False inside `suppress_instrumentation()` / `suppress_http_instrumentation()` (exporters, nesting)."""
    if current is None:
        current = otel_context.get_current()
    return not current or not (  # an empty context (no span, nothing suppressed) needs no look-up
        current.get(SUPPRESS_HTTP_INSTRUMENTATION_KEY)
        or current.get(SUPPRESS_INSTRUMENTATION_KEY)
        or current.get("suppress_instrumentation")
    )


class ClientTelemetry:
    """Tracer, client metric instruments and options of one client instrumentation or instrumented client.

    Built once; holds nothing about any request. `start()` begins the CLIENT span of one logical request.
    """

    __slots__ = (
        "_clean_urls",
        "_dup",
        "_excluded",
        "_origins",
        "_redact",
        "_sensitive",
        "_shapes",
        "_wants_info",
        "_wants_request_view",
        "async_request_hook",
        "async_response_hook",
        "config",
        "metrics",
        "tracer",
    )

    def __init__(
        self,
        instrumenting_module: str,
        config: HTTPConfig,
        tracer_provider: APITracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        async_request_hook: AsyncRequestHook | None = None,
        async_response_hook: AsyncResponseHook | None = None,
    ) -> None:
        self.config = config
        self._sensitive = config.sensitive_query_parameters or frozenset()
        self._redact: Callable[[str, frozenset[str]], str] | None = None
        if config.sensitive_query_parameters is not None:
            from veil.redaction.url import redact_url

            self._redact = redact_url
        self.async_request_hook = async_request_hook
        self.async_response_hook = async_response_hook
        # per-request decisions that depend on the options only, made once here
        self._dup = config.dup
        self._excluded = config.excluded
        self._wants_info = (
            config.request_hook is not None
            or config.response_hook is not None
            or async_request_hook is not None
            or async_response_hook is not None
        )
        self._wants_request_view = self._wants_info or config.request_headers is not None
        # bounded caches, keyed by what requests bring (see `remember`): never grow past CACHE_LIMIT entries
        # (method, scheme, address, port) -> span name, start attributes and metric attribute sets
        self._shapes: dict[tuple[str, str | None, str | None, int | None], ClientShape] = {}
        # `scheme://authority` (never with userinfo) -> (scheme, host, port)
        self._origins: dict[str, tuple[str, str | None, int | None]] = {}
        # URLs the redactor returned unchanged (nothing sensitive in them); never a URL it changed
        self._clean_urls: dict[str, None] = {}
        self.tracer = trace.get_tracer(instrumenting_module, __version__, tracer_provider, schema_url=SCHEMA_URL)
        meter = metrics.get_meter(instrumenting_module, __version__, meter_provider, schema_url=SCHEMA_URL)
        self.metrics: RequestMetrics = request_metrics(meter, "client", config.dup)

    def start(
        self,
        method: str,
        url: str,
        *,
        native: object,
        headers: Callable[[], Iterable[tuple[str, str]]] | None = None,
        scheme: str | None = None,
        server_address: str | None = None,
        server_port: int | None = None,
        request_body_size: int | None = None,
    ) -> ClientRequest | None:
        """Start the CLIENT span of one request; None when instrumentation is suppressed or the URL excluded.

        `url` is the full URL as sent (redacted here); `scheme`/`server_address`/`server_port` are parsed from
        it when not given. `headers()` is only called when headers are captured or a hook needs them. The
        span is not made current: call `activate()` (or `run()`) around the library call.
        """
        parent = otel_context.get_current()
        if not client_http_enabled(parent):
            return None
        excluded = self._excluded
        if excluded is not None and excluded.search(url) is not None:
            return None
        if server_address is None or scheme is None:
            parsed_scheme, parsed_host, parsed_port = self._origin(url)
            scheme = scheme or parsed_scheme
            if server_address is None:
                server_address = parsed_host
                if server_port is None:
                    server_port = parsed_port
        if server_port is None and scheme:
            server_port = DEFAULT_PORTS.get(scheme)
        shape_key = (method, scheme, server_address, server_port)
        shape = self._shapes.get(shape_key)
        if shape is None:
            shape = remember(
                self._shapes,
                shape_key,
                ClientShape(method, scheme, server_address, server_port, self._dup),
                CACHE_LIMIT,
            )
        redacted = url if url in self._clean_urls else self._redacted(url)
        attributes = shape.attributes.copy()
        attributes[URL_FULL] = redacted
        if self._dup:
            attributes[HTTP_URL] = redacted
        span = self.tracer.start_span(shape.name, context=parent, kind=_CLIENT, attributes=attributes)
        request = ClientRequest(self, span, parent, shape, request_body_size)
        if self._wants_request_view and span.is_recording():
            self._request_view(request, method, redacted, headers, native)
        return request

    def _redacted(self, url: str) -> str:
        """url.full: `url` redacted. A URL the redactor left unchanged is remembered (bounded), so the next
        identical URL skips the redactor; a URL with anything redacted is never stored, and is redacted anew
        each time (fail-closed: the shortcut can only return a string the redactor returned unchanged).
        """
        redact = self._redact
        if redact is None:
            return url
        redacted = redact(url, self._sensitive)
        if redacted is url and len(url) <= _CLEAN_URL_MAX_LENGTH:
            remember(self._clean_urls, url, None, CACHE_LIMIT)
        return redacted

    def _origin(self, url: str) -> tuple[str, str | None, int | None]:
        """(scheme, host, port) of an absolute URL, cached per `scheme://authority` without userinfo."""
        separator = url.find("://")
        if separator <= 0:
            return split_url(url)
        end = url.find("/", separator + 3)
        prefix = url if end < 0 else url[:end]
        cached = self._origins.get(prefix)
        if cached is None:
            cached = split_url(url)
            if "@" not in prefix and "?" not in prefix and "#" not in prefix and len(prefix) <= _CLEAN_URL_MAX_LENGTH:
                remember(self._origins, prefix, cached, CACHE_LIMIT)
        return cached

    def _request_view(
        self,
        request: ClientRequest,
        method: str,
        redacted: str,
        headers: Callable[[], Iterable[tuple[str, str]]] | None,
        native: object,
    ) -> None:
        """Captured request headers, the RequestInfo hooks get, and the request hook (only when configured)."""
        span = request.span
        config = self.config
        capture = config.request_headers
        wants_info = self._wants_info
        if headers is not None:
            header_list = list(headers())
            if capture is not None:
                captured = capture.attributes(header_list)
                if captured:
                    span.set_attributes(captured)
            if wants_info:
                request.info = RequestInfo(method, redacted, joined_headers(header_list), native)
        elif wants_info:
            request.info = RequestInfo(method, redacted, {}, native)
        if config.request_hook is not None and request.info is not None:
            call_request_hook(config.request_hook, span, request.info)


def client_telemetry(
    library: str,
    instrumenting_module: str,
    options: Mapping[str, Any],
    *,
    asynchronous: bool = False,
) -> ClientTelemetry:
    """The telemetry of a client instrumentation from `instrument(**options)` / `instrument_client(...)`.

    Options: tracer_provider, meter_provider, request_hook, response_hook, excluded_urls,
    capture_request_headers, capture_response_headers, sanitize_fields, sensitive_query_parameters, and for
    async clients async_request_hook / async_response_hook. Read once, never per request.
    """
    return ClientTelemetry(
        instrumenting_module,
        config_from_options("client", library, options),
        options.get("tracer_provider"),
        options.get("meter_provider"),
        async_request_hook=options.get("async_request_hook") if asynchronous else None,
        async_response_hook=options.get("async_response_hook") if asynchronous else None,
    )
