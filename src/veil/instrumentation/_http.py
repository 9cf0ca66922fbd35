"""Everything HTTP that veil's server and client instrumentations share.

One module so that every library records the same attributes, names, statuses, metrics and redaction; the
per-library modules only translate their request/response objects into the calls below.

Public surface (small on purpose; everything else is private):

Configuration, built ONCE at instrument time (never per request)
    `HTTPConfig`                   frozen: semconv mode, excluded URLs, header capture, redaction, hooks.
    `server_config(library, **overrides) -> HTTPConfig`
    `client_config(library, **overrides) -> HTTPConfig`
                                   read `veil.settings.current()` and `library_excluded_urls(library)`;
                                   keyword arguments (None = not given) override.
    `HeaderCapture`                which header names to record and which values to redact.

Naming and status
    `normalize_method(raw) -> str`          the semconv method or `_OTHER`.
    `span_name(method, route) -> str`       `{method} {route}` or `{method}`; `HTTP` for `_OTHER`.
    `server_status_is_error(code)` / `client_status_is_error(code)`  (5xx / 4xx and 5xx).
    `error_type_of(exception) -> str`       the fully-qualified class name for `error.type`.

Hooks: one signature for every library
    `request_hook(span, request_info)` and `response_hook(span, request_info, response_info)`
    `RequestInfo(method, url, headers, native)` / `ResponseInfo(status_code, headers, native)`
    `call_request_hook(...)` / `call_response_hook(...)`    a hook that raises is logged once, never raised.

Metrics
    `DURATION_BUCKETS`       the semconv advisory boundaries (seconds) for http.*.request.duration.

Server core (WSGI, Django, ASGI)
    `ServerTelemetry(instrumenting_module, config, tracer_provider=None, meter_provider=None)`
                             tracer and server metric instruments, obtained once per instrumentation.
    `ServerTelemetry.start(...) -> ServerRequest | None`       generic; None when the URL is excluded.
    `ServerTelemetry.start_environ(environ, ...) -> ServerRequest | None`   from a WSGI environ / Django META.
    `ServerRequest`          the state of ONE request (never shared): `attach()/detach(token)`,
                             `set_route`, `set_status`, `set_response_headers`, `add_response_bytes`,
                             `record_exception`, `finish()` (idempotent: span end + metrics + response hook).
    `current_server_request() -> ServerRequest | None`
                             the request whose SERVER span is active, so nested layers (Flask inside WSGI
                             middleware, Django behind an ASGI middleware) enrich it instead of starting a
                             second SERVER span.

Sections at the end of the file belong to the ASGI and client instrumentations.
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY, _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.metrics import CallbackOptions, Histogram, MeterProvider, Observation
from opentelemetry.propagators.textmap import Getter, Setter, default_setter
from opentelemetry.semconv._incubating.attributes.http_attributes import (
    HTTP_FLAVOR,
    HTTP_HOST,
    HTTP_METHOD,
    HTTP_SCHEME,
    HTTP_STATUS_CODE,
    HTTP_TARGET,
    HTTP_URL,
    HTTP_USER_AGENT,
)
from opentelemetry.semconv._incubating.attributes.net_attributes import (
    NET_HOST_NAME,
    NET_HOST_PORT,
    NET_PEER_IP,
    NET_PEER_NAME,
    NET_PEER_PORT,
)
from opentelemetry.semconv._incubating.metrics.http_metrics import (
    HTTP_CLIENT_REQUEST_BODY_SIZE,
    HTTP_CLIENT_RESPONSE_BODY_SIZE,
    HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_SERVER_REQUEST_BODY_SIZE,
    HTTP_SERVER_RESPONSE_BODY_SIZE,
)
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_HEADER_TEMPLATE,
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_REQUEST_RESEND_COUNT,
    HTTP_RESPONSE_HEADER_TEMPLATE,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
    HttpRequestMethodValues,
)
from opentelemetry.semconv.attributes.network_attributes import (
    NETWORK_PEER_ADDRESS,
    NETWORK_PROTOCOL_VERSION,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL, URL_PATH, URL_QUERY, URL_SCHEME
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL
from opentelemetry.semconv.metrics import MetricInstruments
from opentelemetry.semconv.metrics.http_metrics import (
    HTTP_CLIENT_REQUEST_DURATION,
    HTTP_SERVER_REQUEST_DURATION,
)
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace import TracerProvider as APITracerProvider
from opentelemetry.util.types import AttributeValue

from veil._guard import call_guarded, log_once
from veil._version import __version__
from veil.errors import ConfigurationError
from veil.propagation import api_module

propagate = api_module()

__all__ = [
    "DURATION_BUCKETS",
    "HTTPConfig",
    "HeaderCapture",
    "RequestHook",
    "RequestInfo",
    "ResponseHook",
    "ResponseInfo",
    "ServerRequest",
    "ServerTelemetry",
    "call_request_hook",
    "call_response_hook",
    "client_config",
    "client_status_is_error",
    "current_server_request",
    "error_type_of",
    "normalize_method",
    "server_config",
    "server_status_is_error",
    "span_name",
]

SCHEMA_URL: Final = Schemas.V1_26_0.value
"""Schema of the stable HTTP conventions veil emits."""

DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
"""Advisory bucket boundaries (seconds) of http.server/client.request.duration, from the conventions."""

_OLD_DURATION_BUCKETS: Final[tuple[float, ...]] = tuple(bound * 1000 for bound in DURATION_BUCKETS)

_KNOWN_METHODS: Final[frozenset[str]] = frozenset(
    member.value for member in HttpRequestMethodValues if member is not HttpRequestMethodValues.OTHER
)
_OTHER_METHOD: Final = HttpRequestMethodValues.OTHER.value


# ------------------------------------------------------------------------------------------------ naming


def normalize_method(raw: str) -> str:
    """http.request.method: the method itself when known (case-sensitive, per semconv), else `_OTHER`."""
    return raw if raw in _KNOWN_METHODS else _OTHER_METHOD


def span_name(method: str, route: str | None) -> str:
    """`{method} {route}`, or `{method}` alone without a route; `HTTP` stands in for an `_OTHER` method."""
    prefix = "HTTP" if method == _OTHER_METHOD else method
    return f"{prefix} {route}" if route else prefix


def server_status_is_error(status_code: int) -> bool:
    """Server spans: only 5xx is an error (a 4xx is the client's mistake, not the server's)."""
    return status_code >= 500


def client_status_is_error(status_code: int) -> bool:
    """Client spans: 4xx and 5xx are errors."""
    return status_code >= 400


def error_type_of(exception: BaseException) -> str:
    """error.type for an exception: its fully-qualified class name (builtins without the module)."""
    cls = type(exception)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


# ----------------------------------------------------------------------------------------------- hooks


@dataclass(frozen=True)
class RequestInfo:
    """What a hook learns about a request, identical for every library.

    `url` is the full URL with credentials and sensitive query values already redacted; `headers` maps
    lowercased names to values (repeated headers joined with `,`); `native` is the library's own object (WSGI
    environ, ASGI scope, Django HttpRequest, httpx.Request, ...).
    """

    __slots__ = ("headers", "method", "native", "url")
    method: str
    url: str
    headers: Mapping[str, str]
    native: object


@dataclass(frozen=True)
class ResponseInfo:
    """What a response hook learns about the response: status (None when none was sent), headers, native."""

    __slots__ = ("headers", "native", "status_code")
    status_code: int | None
    headers: Mapping[str, str]
    native: object


RequestHook = Callable[[Span, RequestInfo], None]
ResponseHook = Callable[[Span, RequestInfo, ResponseInfo], None]


def call_request_hook(hook: RequestHook, span: Span, info: RequestInfo) -> None:
    """Call a user's request hook; if it raises, log once and carry on."""
    call_guarded("request_hook", hook, span, info)


def call_response_hook(hook: ResponseHook, span: Span, request: RequestInfo, response: ResponseInfo) -> None:
    """Call a user's response hook; if it raises, log once and carry on."""
    call_guarded("response_hook", hook, span, request, response)


# --------------------------------------------------------------------------------------- configuration


def _compile_alternatives(variable: str, patterns: Sequence[str], flags: int = 0) -> re.Pattern[str] | None:
    if not patterns:
        return None
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigurationError(
                variable, pattern, "valid Python regular expressions, comma-separated", reason=str(error)
            ) from error
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns), flags)


_CACHE_LIMIT: Final = 512


class HeaderCapture:
    """Which headers to record (case-insensitive full match of any pattern) and which values to hide.

    Values of sensitive headers (veil.redaction's built-in list and secret-looking names) are always
    redacted, even when `.*` is captured; names matching any `sanitize` pattern (case-insensitive search) are
    redacted too.
    Decisions are cached per header name.
    """

    __slots__ = ("_decisions", "_prefix", "_sanitize", "_wanted")

    def __init__(self, patterns: Sequence[str], sanitize: Sequence[str], prefix: str, variable: str) -> None:
        wanted = _compile_alternatives(variable, patterns, re.IGNORECASE)
        assert wanted is not None
        self._wanted = wanted
        self._sanitize = _compile_alternatives(
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", sanitize, re.IGNORECASE
        )
        self._prefix = prefix
        # lowercased name -> (attribute name, redact?) or None when not captured
        self._decisions: dict[str, tuple[str, bool] | None] = {}

    def _decide(self, name: str) -> tuple[str, bool] | None:
        decision = self._decisions.get(name, False)
        if decision is not False:
            return decision  # type: ignore[return-value]
        from veil.redaction.url import is_sensitive_header

        result: tuple[str, bool] | None = None
        if self._wanted.fullmatch(name):
            sanitize = self._sanitize is not None and self._sanitize.search(name) is not None
            result = (f"{self._prefix}.{name}", sanitize or is_sensitive_header(name))
        if len(self._decisions) >= _CACHE_LIMIT:
            self._decisions.clear()
        self._decisions[name] = result
        return result

    def attributes(self, headers: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
        """`http.{request,response}.header.<lowercased name>` -> values, for the captured headers only."""
        from veil.redaction.url import HEADER_MARKER, redact_header_value

        collected: dict[str, list[str]] = {}
        for raw_name, value in headers:
            name = raw_name.lower()
            decision = self._decide(name)
            if decision is None:
                continue
            attribute, redact = decision
            recorded = value
            if redact:
                recorded = redact_header_value(name, value)
                if recorded == value and value:
                    recorded = HEADER_MARKER
            collected.setdefault(attribute, []).append(recorded)
        return {key: tuple(values) for key, values in collected.items()}


@dataclass(frozen=True)
class HTTPConfig:
    """HTTP options of one instrumentation, resolved once at instrument time."""

    dup: bool
    """Also emit the pre-stable attribute and metric names (OTEL_SEMCONV_STABILITY_OPT_IN=http/dup)."""
    excluded: re.Pattern[str] | None
    """Searched in the full URL; a match means the request is not traced at all."""
    request_headers: HeaderCapture | None
    response_headers: HeaderCapture | None
    sensitive_query_parameters: frozenset[str] | None
    """Query parameter names whose values are redacted; None when redaction is disabled."""
    request_hook: RequestHook | None
    response_hook: ResponseHook | None

    def is_excluded(self, url: str) -> bool:
        return self.excluded is not None and self.excluded.search(url) is not None

    def redact_query(self, query: str) -> str:
        if self.sensitive_query_parameters is None or not query:
            return query
        from veil.redaction.url import redact_query

        return redact_query(query, self.sensitive_query_parameters)

    def redact_url(self, url: str) -> str:
        if self.sensitive_query_parameters is None:
            return url
        from veil.redaction.url import redact_url

        return redact_url(url, self.sensitive_query_parameters)


def _build_config(
    side: str,
    library: str,
    *,
    excluded_urls: str | Sequence[str] | None,
    request_hook: RequestHook | None,
    response_hook: ResponseHook | None,
    capture_request_headers: Sequence[str] | None,
    capture_response_headers: Sequence[str] | None,
    sanitize_fields: Sequence[str] | None,
    sensitive_query_parameters: Sequence[str] | None,
) -> HTTPConfig:
    from veil import settings as veil_settings
    from veil.redaction.url import DEFAULT_SENSITIVE_QUERY_PARAMETERS

    current = veil_settings.current()
    if excluded_urls is not None:
        excluded_variable = f"{library} excluded_urls (keyword argument)"
        if isinstance(excluded_urls, str):
            excluded_urls = [item.strip() for item in excluded_urls.split(",") if item.strip()]
        excluded: Sequence[str] = excluded_urls
    else:
        per_library = veil_settings.library_excluded_urls(library)
        if per_library is not None:
            excluded_variable = f"OTEL_PYTHON_{library.upper().replace('-', '_')}_EXCLUDED_URLS"
            excluded = per_library
        else:
            excluded_variable = "OTEL_PYTHON_EXCLUDED_URLS"
            excluded = current.excluded_urls

    upper = side.upper()
    if capture_request_headers is None:
        capture_request_headers = getattr(current, f"http_capture_headers_{side}_request")
    if capture_response_headers is None:
        capture_response_headers = getattr(current, f"http_capture_headers_{side}_response")
    sanitize = list(current.http_capture_headers_sanitize_fields)
    if sanitize_fields is not None:
        sanitize.extend(sanitize_fields)

    sensitive: frozenset[str] | None = None
    if current.redaction_enabled:
        extra = current.sensitive_query_parameters
        if sensitive_query_parameters is not None:
            extra = (*extra, *sensitive_query_parameters)
        sensitive = DEFAULT_SENSITIVE_QUERY_PARAMETERS | frozenset(extra)

    return HTTPConfig(
        dup=current.semconv_http_mode == "dup",
        excluded=_compile_alternatives(excluded_variable, excluded),
        request_headers=HeaderCapture(
            capture_request_headers,
            sanitize,
            HTTP_REQUEST_HEADER_TEMPLATE,
            f"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_{upper}_REQUEST",
        )
        if capture_request_headers
        else None,
        response_headers=HeaderCapture(
            capture_response_headers,
            sanitize,
            HTTP_RESPONSE_HEADER_TEMPLATE,
            f"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_{upper}_RESPONSE",
        )
        if capture_response_headers
        else None,
        sensitive_query_parameters=sensitive,
        request_hook=request_hook,
        response_hook=response_hook,
    )


def server_config(
    library: str,
    *,
    excluded_urls: str | Sequence[str] | None = None,
    request_hook: RequestHook | None = None,
    response_hook: ResponseHook | None = None,
    capture_request_headers: Sequence[str] | None = None,
    capture_response_headers: Sequence[str] | None = None,
    sanitize_fields: Sequence[str] | None = None,
    sensitive_query_parameters: Sequence[str] | None = None,
) -> HTTPConfig:
    """Options of a server instrumentation from veil's settings; keyword arguments (when not None) win.

    `excluded_urls` replaces OTEL_PYTHON_<LIBRARY>_EXCLUDED_URLS / OTEL_PYTHON_EXCLUDED_URLS; header lists
    replace OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_*; `sanitize_fields` and
    `sensitive_query_parameters` add to the configured lists. Raises ConfigurationError for an invalid
    regular expression.
    """
    return _build_config(
        "server",
        library,
        excluded_urls=excluded_urls,
        request_hook=request_hook,
        response_hook=response_hook,
        capture_request_headers=capture_request_headers,
        capture_response_headers=capture_response_headers,
        sanitize_fields=sanitize_fields,
        sensitive_query_parameters=sensitive_query_parameters,
    )


def client_config(
    library: str,
    *,
    excluded_urls: str | Sequence[str] | None = None,
    request_hook: RequestHook | None = None,
    response_hook: ResponseHook | None = None,
    capture_request_headers: Sequence[str] | None = None,
    capture_response_headers: Sequence[str] | None = None,
    sanitize_fields: Sequence[str] | None = None,
    sensitive_query_parameters: Sequence[str] | None = None,
) -> HTTPConfig:
    """Options of a client instrumentation; as `server_config` with the CLIENT header variables."""
    return _build_config(
        "client",
        library,
        excluded_urls=excluded_urls,
        request_hook=request_hook,
        response_hook=response_hook,
        capture_request_headers=capture_request_headers,
        capture_response_headers=capture_response_headers,
        sanitize_fields=sanitize_fields,
        sensitive_query_parameters=sensitive_query_parameters,
    )


# ----------------------------------------------------------------------------------------- server core

_SERVER_REQUEST_KEY: Final = otel_context.create_key("veil-server-request")
_SERVER: Final = SpanKind.SERVER
# Bound once: the per-request paths call these several times.
_perf_counter = time.perf_counter
_attach = otel_context.attach
_detach = otel_context.detach
_set_value = otel_context.set_value
_set_span_in_context = trace.set_span_in_context


def current_server_request() -> ServerRequest | None:
    """The request whose SERVER span is active in the current context, if it is still running."""
    request = otel_context.get_value(_SERVER_REQUEST_KEY)
    if isinstance(request, ServerRequest) and not request.finished:
        return request
    return None


def _parse_content_length(raw: object) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


_PROTOCOL_VERSIONS: Final[dict[str, str]] = {
    "HTTP/1.1": "1.1",
    "HTTP/1.0": "1.0",
    "HTTP/2": "2",
    "HTTP/2.0": "2",
    "HTTP/3": "3",
}
_DEFAULT_PORTS: Final[dict[str, int]] = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def split_host(host: str, scheme: str) -> tuple[str, int | None]:
    """`example.com:8080` -> ("example.com", 8080); `[::1]` -> ("::1", default port of the scheme)."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            address = host[1:end]
            rest = host[end + 1 :]
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            return host, _DEFAULT_PORTS.get(scheme)
    else:
        address, _, port_text = host.partition(":")
    if port_text:
        if port_text.isdigit():
            return address, int(port_text)
        return address, None
    return address, _DEFAULT_PORTS.get(scheme)


class _EnvironGetter(Getter[Mapping[str, Any]]):
    """Reads propagation headers out of a WSGI environ (or Django META)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        if value is None:
            return None
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [key[5:].lower().replace("_", "-") for key in carrier if key.startswith("HTTP_")]


ENVIRON_GETTER: Final = _EnvironGetter()


def environ_headers(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The request headers of a WSGI environ as (lowercased name with dashes, value) pairs."""
    headers: list[tuple[str, str]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].lower().replace("_", "-"), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.append((key.lower().replace("_", "-"), value))
    return headers


_ActiveKey = tuple[tuple[str, AttributeValue], ...]
_Shape = tuple[str, dict[str, AttributeValue], _ActiveKey, str]
_MetricAttributes = tuple[dict[str, AttributeValue], "dict[str, AttributeValue] | None"]
_SHAPE_CACHE_LIMIT: Final = 256


class ServerTelemetry:
    """The tracer, the server metric instruments and the options of one server instrumentation.

    Built once (instrument(), instrument_app(), middleware construction); holds nothing about any request,
    only bounded caches of values derived from low-cardinality request shapes (method, scheme, Host,
    protocol; route, status) so the per-request path copies prepared attribute sets instead of rebuilding
    them.
    """

    __slots__ = (
        "_active_counts",
        "_active_lock",
        "_duration",
        "_metric_attributes",
        "_old_duration",
        "_old_request_size",
        "_old_response_size",
        "_request_size",
        "_response_size",
        "_shapes",
        "config",
        "tracer",
    )

    def __init__(
        self,
        instrumenting_module: str,
        config: HTTPConfig,
        tracer_provider: APITracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.config = config
        self.tracer = trace.get_tracer(instrumenting_module, __version__, tracer_provider, schema_url=SCHEMA_URL)
        meter = metrics.get_meter(instrumenting_module, __version__, meter_provider, schema_url=SCHEMA_URL)
        self._duration: Histogram = meter.create_histogram(
            HTTP_SERVER_REQUEST_DURATION,
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        # http.server.active_requests is an up-down counter; it is kept here as plain per-attribute-set counts
        # and reported through an observable up-down counter, which exports the same cumulative sum for a
        # fraction of the cost of two synchronous SDK measurements per request.
        self._active_counts: dict[_ActiveKey, int] = {}
        self._active_lock = threading.Lock()
        meter.create_observable_up_down_counter(
            HTTP_SERVER_ACTIVE_REQUESTS,
            callbacks=[self._observe_active],
            unit="{request}",
            description="Number of active HTTP server requests.",
        )
        self._request_size: Histogram = meter.create_histogram(
            HTTP_SERVER_REQUEST_BODY_SIZE, unit="By", description="Size of HTTP server request bodies."
        )
        self._response_size: Histogram = meter.create_histogram(
            HTTP_SERVER_RESPONSE_BODY_SIZE, unit="By", description="Size of HTTP server response bodies."
        )
        self._old_duration: Histogram | None = None
        self._old_request_size: Histogram | None = None
        self._old_response_size: Histogram | None = None
        if config.dup:
            self._old_duration = meter.create_histogram(
                MetricInstruments.HTTP_SERVER_DURATION,
                unit="ms",
                description="Duration of HTTP server requests (pre-stable name).",
                explicit_bucket_boundaries_advisory=_OLD_DURATION_BUCKETS,
            )
            self._old_request_size = meter.create_histogram(
                MetricInstruments.HTTP_SERVER_REQUEST_SIZE, unit="By", description="Request size (old name)."
            )
            self._old_response_size = meter.create_histogram(
                MetricInstruments.HTTP_SERVER_RESPONSE_SIZE,
                unit="By",
                description="Response size (old).",
            )
        # (method, scheme, Host, protocol) -> (normalized method, span attributes, active key, span name)
        self._shapes: dict[tuple[str, str, str | None, str | None], _Shape] = {}
        # (method, original method, scheme, status, route, protocol, error.type) -> metric attribute sets
        self._metric_attributes: dict[tuple[Any, ...], _MetricAttributes] = {}

    def _observe_active(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._active_lock:
            counts = list(self._active_counts.items())
        return [Observation(count, dict(key)) for key, count in counts]

    def _active_add(self, key: _ActiveKey, delta: int) -> None:
        with self._active_lock:
            self._active_counts[key] = self._active_counts.get(key, 0) + delta

    def _shape(self, method: str, scheme: str, host: str | None, protocol_version: str | None) -> _Shape:
        """The request-independent part of a request's attributes, for one (method, scheme, Host, protocol)."""
        normalized = normalize_method(method)
        attributes: dict[str, AttributeValue] = {HTTP_REQUEST_METHOD: normalized, URL_SCHEME: scheme}
        if normalized != method:
            attributes[HTTP_REQUEST_METHOD_ORIGINAL] = method
        server_address: str | None = None
        server_port: int | None = None
        if host:
            server_address, server_port = split_host(host, scheme)
            attributes[SERVER_ADDRESS] = server_address
            if server_port is not None:
                attributes[SERVER_PORT] = server_port
        if protocol_version:
            attributes[NETWORK_PROTOCOL_VERSION] = protocol_version
        if self.config.dup:
            attributes[HTTP_METHOD] = method
            attributes[HTTP_SCHEME] = scheme
            if host:
                attributes[HTTP_HOST] = host
            if server_address:
                attributes[NET_HOST_NAME] = server_address
            if server_port is not None:
                attributes[NET_HOST_PORT] = server_port
            if protocol_version:
                attributes[HTTP_FLAVOR] = protocol_version
            active_key: _ActiveKey = (
                (HTTP_REQUEST_METHOD, normalized),
                (URL_SCHEME, scheme),
                (HTTP_METHOD, method),
                (HTTP_SCHEME, scheme),
            )
        else:
            active_key = ((HTTP_REQUEST_METHOD, normalized), (URL_SCHEME, scheme))
        shape = (normalized, attributes, active_key, span_name(normalized, None))
        shapes = self._shapes
        if len(shapes) >= _SHAPE_CACHE_LIMIT:
            shapes.clear()  # the Host header is the client's: never let it grow without bound
        shapes[(method, scheme, host, protocol_version)] = shape
        return shape

    def _metric_attribute_sets(
        self, request: ServerRequest, status: int | None, error_type: str | None
    ) -> _MetricAttributes:
        """The (stable, pre-stable or None) metric attribute sets of a finished request, cached per shape."""
        key = (
            request.method,
            request.original_method,
            request.scheme,
            status,
            request.route,
            request.protocol_version,
            error_type,
        )
        cached = self._metric_attributes.get(key)
        if cached is not None:
            return cached
        attributes: dict[str, AttributeValue] = {HTTP_REQUEST_METHOD: request.method, URL_SCHEME: request.scheme}
        if status is not None:
            attributes[HTTP_RESPONSE_STATUS_CODE] = status
        if request.route:
            attributes[HTTP_ROUTE] = request.route
        if request.protocol_version:
            attributes[NETWORK_PROTOCOL_VERSION] = request.protocol_version
        if error_type is not None:
            attributes[ERROR_TYPE] = error_type
        old: dict[str, AttributeValue] | None = None
        if self._old_duration is not None:
            old = {HTTP_METHOD: request.original_method, HTTP_SCHEME: request.scheme}
            if status is not None:
                old[HTTP_STATUS_CODE] = status
            if request.route:
                old[HTTP_ROUTE] = request.route
            if request.protocol_version:
                old[HTTP_FLAVOR] = request.protocol_version
        cached = (attributes, old)
        sets = self._metric_attributes
        if len(sets) >= _CACHE_LIMIT:
            sets.clear()
        sets[key] = cached
        return cached

    # -- starting

    def start(
        self,
        *,
        method: str,
        scheme: str,
        path: str,
        query: str,
        host: str | None,
        client_address: str | None,
        peer_address: str | None = None,
        protocol_version: str | None,
        user_agent: str | None,
        request_body_size: int | None,
        carrier: Any,
        getter: Getter[Any],
        headers: Callable[[], Iterable[tuple[str, str]]],
        native: object,
        route: str | None = None,
    ) -> ServerRequest | None:
        """Start the SERVER span of one request, or return None when its URL is excluded.

        `host` is the Host header (or `server_name:port`); `headers()` is only called when headers are
        captured or a hook needs them. The span is created but not made current: call `attach()`.
        """
        return self._start(
            method,
            scheme,
            path,
            query,
            host,
            client_address,
            peer_address,
            protocol_version,
            user_agent,
            request_body_size,
            carrier,
            getter,
            headers,
            native,
            route,
        )

    def _start(  # noqa: PLR0917 - positional on purpose: called once per request
        self,
        method: str,
        scheme: str,
        path: str,
        query: str,
        host: str | None,
        client_address: str | None,
        peer_address: str | None,
        protocol_version: str | None,
        user_agent: str | None,
        request_body_size: int | None,
        carrier: Any,
        getter: Getter[Any],
        headers: Callable[[], Iterable[tuple[str, str]]] | None,
        native: object,
        route: str | None,
    ) -> ServerRequest | None:
        config = self.config
        if config.excluded is not None:
            target = f"{scheme}://{host or ''}{path}"
            if query:
                target = f"{target}?{query}"
            if config.excluded.search(target) is not None:
                return None

        shape = self._shapes.get((method, scheme, host, protocol_version))
        if shape is None:
            shape = self._shape(method, scheme, host, protocol_version)
        normalized, base, active_key, name = shape
        attributes = base.copy()
        attributes[URL_PATH] = path
        redacted_query = config.redact_query(query) if query else ""
        if redacted_query:
            attributes[URL_QUERY] = redacted_query
        if client_address:
            attributes[CLIENT_ADDRESS] = client_address
        if peer_address:
            attributes[NETWORK_PEER_ADDRESS] = peer_address
        if user_agent:
            attributes[USER_AGENT_ORIGINAL] = user_agent
        if route:
            attributes[HTTP_ROUTE] = route
            name = span_name(normalized, route)
        if config.dup:
            attributes[HTTP_TARGET] = f"{path}?{redacted_query}" if redacted_query else path
            if client_address:
                attributes[NET_PEER_IP] = client_address
            if user_agent:
                attributes[HTTP_USER_AGENT] = user_agent

        parent = propagate.extract(carrier, getter=getter)
        span = self.tracer.start_span(name, parent, _SERVER, attributes)
        request = ServerRequest(
            self, span, parent, normalized, method, scheme, protocol_version, route, active_key=active_key
        )
        request.request_body_size = request_body_size
        self._active_add(active_key, 1)

        if (
            config.request_headers is not None or config.request_hook is not None or config.response_hook is not None
        ) and span.is_recording():
            capture = config.request_headers
            header_list = list(headers()) if headers is not None else environ_headers(carrier)
            if capture is not None:
                captured = capture.attributes(header_list)
                if captured:
                    span.set_attributes(captured)
            if config.request_hook is not None or config.response_hook is not None:
                url = f"{scheme}://{host or ''}{path}"
                if redacted_query:
                    url = f"{url}?{redacted_query}"
                request.info = RequestInfo(method, url, _joined(header_list), native)
                if config.request_hook is not None:
                    call_request_hook(config.request_hook, span, request.info)
        return request

    def start_environ(
        self,
        environ: Mapping[str, Any],
        *,
        native: object = None,
        scheme: str | None = None,
        protocol_version: str | None = None,
        route: str | None = None,
    ) -> ServerRequest | None:
        """Start the SERVER span of a WSGI request (also used for Django's META under WSGI and ASGI).

        `scheme` and `protocol_version` override what the environ says (Django under ASGI knows them from
        the scope, its META does not carry them).
        """
        get = environ.get
        scheme = scheme or get("wsgi.url_scheme") or "http"
        host = get("HTTP_HOST")
        if not host:
            name = get("SERVER_NAME")
            if name:
                port = get("SERVER_PORT")
                host = f"{name}:{port}" if port and _DEFAULT_PORTS.get(scheme) != _int_or_none(port) else name
        remote = get("REMOTE_ADDR")
        forwarded = get("HTTP_X_FORWARDED_FOR")
        if forwarded:
            client = forwarded.split(",", 1)[0].strip() or remote
            peer = remote
        else:
            client = remote
            peer = None
        version = protocol_version
        if version is None:
            protocol = get("SERVER_PROTOCOL")
            if protocol:
                version = _PROTOCOL_VERSIONS.get(protocol)
                if version is None and protocol.startswith("HTTP/"):
                    version = protocol[5:]
        length = get("CONTENT_LENGTH")
        return self._start(
            get("REQUEST_METHOD") or "GET",
            scheme,
            (get("SCRIPT_NAME") or "") + (get("PATH_INFO") or "") or "/",
            get("QUERY_STRING") or "",
            host,
            client,
            peer,
            version,
            get("HTTP_USER_AGENT"),
            _parse_content_length(length) if length else None,
            environ,
            ENVIRON_GETTER,
            None,  # headers: read from the environ itself, only when captured or a hook needs them
            environ if native is None else native,
            route,
        )


def _int_or_none(text: object) -> int | None:
    try:
        return int(text)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None


def _joined(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        previous = result.get(lowered)
        result[lowered] = value if previous is None else f"{previous},{value}"
    return result


class ServerRequest:
    """The state of one inbound request: created by `ServerTelemetry.start`, owned by that request only."""

    __slots__ = (
        "_active_key",
        "_exception",
        "_route_changed",
        "_start",
        "context",
        "error_type",
        "finished",
        "info",
        "method",
        "original_method",
        "protocol_version",
        "request_body_size",
        "response_body_size",
        "response_headers",
        "response_native",
        "route",
        "scheme",
        "span",
        "status_code",
        "telemetry",
    )

    def __init__(  # noqa: PLR0917 - private constructor, called once per request by ServerTelemetry
        self,
        telemetry: ServerTelemetry,
        span: Span,
        parent: otel_context.Context,
        method: str,
        original_method: str,
        scheme: str,
        protocol_version: str | None,
        route: str | None,
        *,
        active_key: _ActiveKey | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.span = span
        self.context = _set_value(_SERVER_REQUEST_KEY, self, _set_span_in_context(span, parent))
        self.method = method
        self.original_method = original_method
        self.scheme = scheme
        self.protocol_version = protocol_version
        self.route = route
        self.status_code: int | None = None
        self.error_type: str | None = None
        self.request_body_size: int | None = None
        self.response_body_size: int | None = None
        self.response_headers: Iterable[tuple[str, str]] | None = None
        self.response_native: object = None
        self.info: RequestInfo | None = None
        self.finished = False
        self._exception: BaseException | None = None
        self._route_changed = False
        if active_key is None:
            if telemetry.config.dup:
                active_key = (
                    (HTTP_REQUEST_METHOD, method),
                    (URL_SCHEME, scheme),
                    (HTTP_METHOD, original_method),
                    (HTTP_SCHEME, scheme),
                )
            else:
                active_key = ((HTTP_REQUEST_METHOD, method), (URL_SCHEME, scheme))
        self._active_key = active_key
        self._start = _perf_counter()

    # -- context

    def attach(self) -> object:
        """Make this request's span current; returns the token for `detach`."""
        return _attach(self.context)

    @staticmethod
    def detach(token: object) -> None:
        _detach(token)  # type: ignore[arg-type]

    # -- what the adapters learn along the way

    def set_route(self, route: str | None) -> None:
        """Record the matched route template and rename the span `{method} {route}`."""
        if not route or route == self.route:
            return
        self.route = route
        self._route_changed = True  # http.route is set with the other end-of-request attributes
        span = self.span
        if span.is_recording():
            span.update_name(span_name(self.method, route))

    def set_status(self, status_code: int) -> None:
        self.status_code = status_code

    def set_response_headers(self, headers: Iterable[tuple[str, str]], native: object = None) -> None:
        """Remember the response headers (captured at `finish` if configured) and the native response."""
        self.response_headers = headers
        if native is not None:
            self.response_native = native

    def add_response_bytes(self, count: int) -> None:
        size = self.response_body_size
        self.response_body_size = count if size is None else size + count

    def record_exception(self, exception: BaseException) -> None:
        """Record an unhandled exception once: exception event, ERROR status, error.type; reported as 500."""
        if self._exception is not None or self.finished:
            return
        self._exception = exception
        self.error_type = error_type_of(exception)
        if self.status_code is None:
            self.status_code = 500
        span = self.span
        if span.is_recording():
            span.record_exception(exception, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{type(exception).__qualname__}: {exception}"))

    # -- ending

    def finish(self) -> None:
        """End the span and record the metrics; only the first call counts."""
        if self.finished:
            return
        self.finished = True
        elapsed = _perf_counter() - self._start
        telemetry = self.telemetry
        span = self.span
        status = self.status_code
        error_type = self.error_type
        if error_type is None and status is not None and status >= 500:
            error_type = str(status)
        try:
            if span.is_recording():
                config = telemetry.config
                if status is not None:
                    attributes: dict[str, AttributeValue] = {HTTP_RESPONSE_STATUS_CODE: status}
                    if config.dup:
                        attributes[HTTP_STATUS_CODE] = status
                else:
                    attributes = {}
                if error_type is not None:
                    attributes[ERROR_TYPE] = error_type
                if self._route_changed and self.route:
                    attributes[HTTP_ROUTE] = self.route
                if attributes:
                    span.set_attributes(attributes)
                if self._exception is None and status is not None and status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                if config.response_headers is not None and self.response_headers is not None:
                    captured = config.response_headers.attributes(self.response_headers)
                    if captured:
                        span.set_attributes(captured)
                if config.response_hook is not None and self.info is not None:
                    response = ResponseInfo(status, _joined(self.response_headers or ()), self.response_native)
                    call_response_hook(config.response_hook, span, self.info, response)
        finally:
            span.end()
        self._record_metrics(elapsed, status, error_type)

    def _record_metrics(self, elapsed: float, status: int | None, error_type: str | None) -> None:
        telemetry = self.telemetry
        telemetry._active_add(self._active_key, -1)
        attributes, old = telemetry._metric_attribute_sets(self, status, error_type)
        # The SDK copies the attribute mapping of every measurement, so the cached sets are never mutated.
        exemplar_context = self.context
        telemetry._duration.record(elapsed, attributes, exemplar_context)
        request_size = self.request_body_size
        response_size = self.response_body_size
        if request_size is not None:
            telemetry._request_size.record(request_size, attributes, exemplar_context)
        if response_size is not None:
            telemetry._response_size.record(response_size, attributes, exemplar_context)
        if old is not None and telemetry._old_duration is not None:
            telemetry._old_duration.record(elapsed * 1000.0, old, exemplar_context)
            if request_size is not None and telemetry._old_request_size is not None:
                telemetry._old_request_size.record(request_size, old, exemplar_context)
            if response_size is not None and telemetry._old_response_size is not None:
                telemetry._old_response_size.record(response_size, old, exemplar_context)


def finish_guarded(request: ServerRequest) -> None:
    """`request.finish()`, never raising into the host application."""
    try:
        request.finish()
    except Exception:
        log_once("http.finish", "veil: failed to end an HTTP server span", exc_info=True)


# --- server: ASGI
# An ASGI scope carries its request headers as a list of (lowercased name, value) byte pairs. One pass over
# that list builds a small bytes-keyed map (repeated headers joined with `,`) which serves the attributes,
# the Content-Length and, through SCOPE_GETTER, the propagators; header capture and hooks decode the raw list
# only when they are configured.


def scope_header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The request headers of an ASGI scope by (already lowercased) name; repeated headers joined with `,`."""
    headers: dict[bytes, bytes] = {}
    for name, value in raw:
        previous = headers.get(name)
        headers[name] = value if previous is None else previous + b"," + value
    return headers


def decode_scope_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The raw header pairs of an ASGI scope or response-start message as latin-1 strings."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]


class _ScopeHeadersGetter(Getter[Mapping[bytes, bytes]]):
    """Reads propagation headers out of `scope_header_map(scope["headers"])`."""

    def get(self, carrier: Mapping[bytes, bytes], key: str) -> list[str] | None:
        value = carrier.get(key.lower().encode("latin-1"))
        if value is None:
            return None
        return [value.decode("latin-1")]

    def keys(self, carrier: Mapping[bytes, bytes]) -> list[str]:
        return [name.decode("latin-1") for name in carrier]


SCOPE_GETTER: Final = _ScopeHeadersGetter()


def start_scope(
    telemetry: ServerTelemetry, scope: Mapping[str, Any], *, method: str | None = None
) -> ServerRequest | None:
    """Start the SERVER span of an ASGI `http` request (or `websocket` handshake, with `method="GET"`).

    None when the URL is excluded. Reads only the scope: `scheme`, `path`, `query_string`, `http_version`,
    `client`, `server` and the headers (Host, User-Agent, X-Forwarded-For, Content-Length, propagation).
    """
    raw: Iterable[tuple[bytes, bytes]] = scope.get("headers") or ()
    headers = scope_header_map(raw)
    scheme = scope.get("scheme") or ("ws" if scope.get("type") == "websocket" else "http")
    host_bytes = headers.get(b"host")
    host: str | None
    if host_bytes:
        host = host_bytes.decode("latin-1")
    else:
        server = scope.get("server")
        host = None
        if server and server[0]:
            port = server[1] if len(server) > 1 else None
            host = f"{server[0]}:{port}" if port is not None and _DEFAULT_PORTS.get(scheme) != port else server[0]
    client = scope.get("client")
    remote: str | None = client[0] if client else None
    forwarded = headers.get(b"x-forwarded-for")
    peer: str | None = None
    if forwarded:
        client_address = forwarded.split(b",", 1)[0].strip().decode("latin-1") or remote
        peer = remote
    else:
        client_address = remote
    user_agent = headers.get(b"user-agent")
    query: bytes = scope.get("query_string") or b""
    return telemetry.start(
        method=method or scope.get("method") or "GET",
        scheme=scheme,
        path=scope.get("path") or "/",
        query=query.decode("latin-1") if query else "",
        host=host,
        client_address=client_address,
        peer_address=peer,
        protocol_version=scope.get("http_version"),
        user_agent=user_agent.decode("latin-1") if user_agent else None,
        request_body_size=_parse_content_length(headers.get(b"content-length")),
        carrier=headers,
        getter=SCOPE_GETTER,
        headers=lambda: decode_scope_headers(raw),
        native=scope,
    )


# --- client
_SCRUB_QUERY: Final = re.compile(r"\?([^\s'\"#)<>]*=[^\s'\"#)<>]*)")
_AUTHORITY_USERINFO: Final = re.compile(r"(?<=://)[^/\s@'\"]+@")
_DEFAULT_SETTER: Final = default_setter


def client_http_enabled(current: otel_context.Context | None = None) -> bool:
    """False inside `suppress_instrumentation()` / `suppress_http_instrumentation()` (exporters, nesting)."""
    if current is None:
        current = otel_context.get_current()
    return not (
        current.get(_SUPPRESS_HTTP_INSTRUMENTATION_KEY)
        or current.get(_SUPPRESS_INSTRUMENTATION_KEY)
        or current.get("suppress_instrumentation")
    )


def split_url(url: str) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) of an absolute URL, cheaply: `https://u:p@[::1]:8443/x` -> ("https", "::1", 8443).

    The port is the scheme's default when the URL has none; host is None when the URL has no authority.
    """
    separator = url.find("://")
    if separator <= 0:
        return "", None, None
    scheme = url[:separator].lower()
    start = separator + 3
    end = len(url)
    for delimiter in "/?#":
        position = url.find(delimiter, start, end)
        if position >= 0:
            end = position
    at = url.rfind("@", start, end)
    if at >= 0:
        start = at + 1
    authority = url[start:end]
    if not authority:
        return scheme, None, None
    host, port = split_host(authority, scheme)
    return scheme, host.lower(), port


def scrub_error_text(text: str, config: HTTPConfig) -> str:
    """An exception message or traceback without URL credentials or sensitive query values."""
    if config.sensitive_query_parameters is None:
        return text
    if "@" in text:
        text = _AUTHORITY_USERINFO.sub("REDACTED:REDACTED@", text)
    if "?" in text:
        text = _SCRUB_QUERY.sub(lambda match: "?" + config.redact_query(match.group(1)), text)
    return text


def content_length(value: object) -> int | None:
    """A Content-Length header value as a non-negative int, or None."""
    return _parse_content_length(value)


AsyncRequestHook = Callable[[Span, RequestInfo], Awaitable[None]]
AsyncResponseHook = Callable[[Span, RequestInfo, ResponseInfo], Awaitable[None]]


class ClientTelemetry:
    """Tracer, client metric instruments and options of one client instrumentation or instrumented client.

    Built once; holds nothing about any request. `start()` begins the CLIENT span of one logical request.
    """

    __slots__ = (
        "_duration",
        "_metric_attributes",
        "_old_duration",
        "_old_request_size",
        "_old_response_size",
        "_redact",
        "_request_size",
        "_response_size",
        "_sensitive",
        "async_request_hook",
        "async_response_hook",
        "config",
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
        # (method, original method, scheme, address, port, status, protocol, error.type) -> metric attribute sets
        self._metric_attributes: dict[tuple[Any, ...], _MetricAttributes] = {}
        self.tracer = trace.get_tracer(instrumenting_module, __version__, tracer_provider, schema_url=SCHEMA_URL)
        meter = metrics.get_meter(instrumenting_module, __version__, meter_provider, schema_url=SCHEMA_URL)
        self._duration: Histogram = meter.create_histogram(
            HTTP_CLIENT_REQUEST_DURATION,
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._request_size: Histogram = meter.create_histogram(
            HTTP_CLIENT_REQUEST_BODY_SIZE, unit="By", description="Size of HTTP client request bodies."
        )
        self._response_size: Histogram = meter.create_histogram(
            HTTP_CLIENT_RESPONSE_BODY_SIZE, unit="By", description="Size of HTTP client response bodies."
        )
        self._old_duration: Histogram | None = None
        self._old_request_size: Histogram | None = None
        self._old_response_size: Histogram | None = None
        if config.dup:
            self._old_duration = meter.create_histogram(
                MetricInstruments.HTTP_CLIENT_DURATION,
                unit="ms",
                description="Duration of HTTP client requests (pre-stable name).",
                explicit_bucket_boundaries_advisory=_OLD_DURATION_BUCKETS,
            )
            self._old_request_size = meter.create_histogram(
                MetricInstruments.HTTP_CLIENT_REQUEST_SIZE, unit="By", description="Request size (old name)."
            )
            self._old_response_size = meter.create_histogram(
                MetricInstruments.HTTP_CLIENT_RESPONSE_SIZE,
                unit="By",
                description="Response size (old name).",
            )

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
        span is not made current: call `activate()` around the library call.
        """
        parent = otel_context.get_current()
        if not client_http_enabled(parent):
            return None
        config = self.config
        if config.excluded is not None and config.excluded.search(url) is not None:
            return None
        if server_address is None or scheme is None:
            parsed_scheme, parsed_host, parsed_port = split_url(url)
            scheme = scheme or parsed_scheme
            if server_address is None:
                server_address = parsed_host
                if server_port is None:
                    server_port = parsed_port
        if server_port is None and scheme:
            server_port = _DEFAULT_PORTS.get(scheme)
        normalized = normalize_method(method)
        redacted = url if self._redact is None else self._redact(url, self._sensitive)
        attributes: dict[str, AttributeValue] = {HTTP_REQUEST_METHOD: normalized, URL_FULL: redacted}
        if normalized != method:
            attributes[HTTP_REQUEST_METHOD_ORIGINAL] = method
        if server_address:
            attributes[SERVER_ADDRESS] = server_address
        if server_port is not None:
            attributes[SERVER_PORT] = server_port
        if config.dup:
            attributes[HTTP_METHOD] = method
            attributes[HTTP_URL] = redacted
            if server_address:
                attributes[NET_PEER_NAME] = server_address
            if server_port is not None:
                attributes[NET_PEER_PORT] = server_port
        span = self.tracer.start_span(
            span_name(normalized, None), context=parent, kind=SpanKind.CLIENT, attributes=attributes
        )
        request = ClientRequest(self, span, parent, normalized, method, scheme, server_address, server_port)
        request.request_body_size = request_body_size
        if span.is_recording():
            capture = config.request_headers
            wants_info = (
                config.request_hook is not None
                or config.response_hook is not None
                or self.async_request_hook is not None
                or self.async_response_hook is not None
            )
            if headers is not None and (capture is not None or wants_info):
                header_list = list(headers())
                if capture is not None:
                    captured = capture.attributes(header_list)
                    if captured:
                        span.set_attributes(captured)
                if wants_info:
                    request.info = RequestInfo(method, redacted, _joined(header_list), native)
            elif wants_info:
                request.info = RequestInfo(method, redacted, {}, native)
            if config.request_hook is not None and request.info is not None:
                call_request_hook(config.request_hook, span, request.info)
        return request


class ClientRequest:
    """The state of one outbound request: created by `ClientTelemetry.start`, owned by that request only.

    Typical use by a library wrapper::

        request = telemetry.start(method, url, native=..., headers=...)
        if request is None: return wrapped(...)            # suppressed or excluded
        request.inject(outgoing_headers)                    # propagation, into a copy the library sends
        token = request.activate()                          # span current; nested HTTP clients suppressed
        try: response = wrapped(...)
        except BaseException as error: request.finish(error); raise
        finally: request.deactivate(token)
        request.set_response(status, ...)                   # attributes, header capture, response hook
        ...  request.finish() when the body is fully read or closed
    """

    __slots__ = (
        "_start",
        "context",
        "error_type",
        "finished",
        "info",
        "method",
        "original_method",
        "protocol_version",
        "request_body_size",
        "resend_count",
        "response_body_size",
        "scheme",
        "server_address",
        "server_port",
        "span",
        "status_code",
        "telemetry",
    )

    def __init__(  # noqa: PLR0917 - private constructor, called once per request by ClientTelemetry
        self,
        telemetry: ClientTelemetry,
        span: Span,
        parent: otel_context.Context,
        method: str,
        original_method: str,
        scheme: str | None,
        server_address: str | None,
        server_port: int | None,
    ) -> None:
        self.telemetry = telemetry
        self.span = span
        self.context = trace.set_span_in_context(span, parent)
        self.method = method
        self.original_method = original_method
        self.scheme = scheme
        self.server_address = server_address
        self.server_port = server_port
        self.status_code: int | None = None
        self.protocol_version: str | None = None
        self.resend_count = 0
        self.error_type: str | None = None
        self.request_body_size: int | None = None
        self.response_body_size: int | None = None
        self.info: RequestInfo | None = None
        self.finished = False
        self._start = time.perf_counter()

    # -- context

    def inject(self, carrier: Any, setter: Setter[Any] = _DEFAULT_SETTER) -> None:
        """Write the propagation headers of this request's span into `carrier` (the library's own copy)."""
        propagate.inject(carrier, context=self.context, setter=setter)

    def activate(self, key: str | None = None, value: object = None) -> object:
        """Make the span current and suppress nested HTTP instrumentation; returns a `deactivate` token.

        `key`/`value` add one more context value for the duration (a library's own re-entrancy marker).
        """
        active = otel_context.set_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, self.context)
        if key is not None:
            active = otel_context.set_value(key, value, active)
        return otel_context.attach(active)

    @staticmethod
    def deactivate(token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]

    async def run_async_request_hook(self) -> None:
        """Await the async request hook (async clients), logging and swallowing what it raises."""
        hook = self.telemetry.async_request_hook
        if hook is None or self.info is None or not self.span.is_recording():
            return
        try:
            await hook(self.span, self.info)
        except Exception:
            log_once("async_request_hook", "veil: async_request_hook raised (ignored)", exc_info=True)

    async def run_async_response_hook(self, response: ResponseInfo | None) -> None:
        hook = self.telemetry.async_response_hook
        if hook is None or response is None or self.info is None or not self.span.is_recording():
            return
        try:
            await hook(self.span, self.info, response)
        except Exception:
            log_once("async_response_hook", "veil: async_response_hook raised (ignored)", exc_info=True)

    # -- the response

    def set_response(
        self,
        status_code: int,
        *,
        headers: Callable[[], Iterable[tuple[str, str]]] | None = None,
        body_size: int | None = None,
        protocol_version: str | None = None,
        resend_count: int = 0,
        native: object = None,
    ) -> ResponseInfo | None:
        """Record what the response headers tell: status, protocol, resends, captured headers; run the hook.

        `headers()` is only called when response headers are captured or a hook needs them; `body_size` is
        the Content-Length when known. Returns the `ResponseInfo` for async hooks, or None when none needs it.
        """
        self.status_code = status_code
        self.protocol_version = protocol_version
        self.resend_count = resend_count
        if body_size is not None:
            self.response_body_size = body_size
        span = self.span
        if not span.is_recording():
            return None
        config = self.telemetry.config
        attributes: dict[str, AttributeValue] = {HTTP_RESPONSE_STATUS_CODE: status_code}
        if protocol_version:
            attributes[NETWORK_PROTOCOL_VERSION] = protocol_version
        if resend_count:
            attributes[HTTP_REQUEST_RESEND_COUNT] = resend_count
        if config.dup:
            attributes[HTTP_STATUS_CODE] = status_code
            if protocol_version:
                attributes[HTTP_FLAVOR] = protocol_version
        header_list: list[tuple[str, str]] | None = None
        if headers is not None and (config.response_headers is not None or self.info is not None):
            header_list = list(headers())
            if config.response_headers is not None:
                attributes.update(config.response_headers.attributes(header_list))
        span.set_attributes(attributes)
        if self.info is None:
            return None
        response = ResponseInfo(status_code, _joined(header_list or ()), native)
        if config.response_hook is not None:
            call_response_hook(config.response_hook, span, self.info, response)
        return response

    def set_response_body_size(self, size: int) -> None:
        self.response_body_size = size

    # -- ending

    def finish(self, exception: BaseException | None = None) -> None:
        """End the span and record the metrics; only the first call counts. Never raises."""
        if self.finished:
            return
        self.finished = True
        try:
            self._finish(exception)
        except Exception:
            log_once("http.client.finish", "veil: failed to end an HTTP client span", exc_info=True)

    def _finish(self, exception: BaseException | None) -> None:
        elapsed = _perf_counter() - self._start
        span = self.span
        status = self.status_code
        if exception is not None:
            self.error_type = error_type_of(exception)
        elif status is not None and client_status_is_error(status):
            self.error_type = str(status)
        try:
            if span.is_recording() and self.error_type is not None:
                span.set_attribute(ERROR_TYPE, self.error_type)
                if exception is not None:
                    self._record_exception(exception)
                else:
                    span.set_status(Status(StatusCode.ERROR))
        finally:
            span.end()
        self._record_metrics(elapsed)

    def _record_exception(self, exception: BaseException) -> None:
        config = self.telemetry.config
        message = scrub_error_text(str(exception), config)
        stacktrace = scrub_error_text(
            "".join(traceback.format_exception(type(exception), exception, exception.__traceback__)), config
        )
        self.span.record_exception(
            exception,
            attributes={EXCEPTION_MESSAGE: message, EXCEPTION_STACKTRACE: stacktrace},
            escaped=True,
        )
        self.span.set_status(Status(StatusCode.ERROR, f"{type(exception).__qualname__}: {message}"))

    def _record_metrics(self, elapsed: float) -> None:
        telemetry = self.telemetry
        key = (
            self.method,
            self.original_method,
            self.scheme,
            self.server_address,
            self.server_port,
            self.status_code,
            self.protocol_version,
            self.error_type,
        )
        cached = telemetry._metric_attributes.get(key)
        if cached is None:
            cached = self._metric_attribute_sets(key)
        attributes, old = cached
        # The SDK copies the attribute mapping of every measurement, so the cached sets are never mutated.
        exemplar_context = self.context
        request_size = self.request_body_size
        response_size = self.response_body_size
        telemetry._duration.record(elapsed, attributes, exemplar_context)
        if request_size is not None:
            telemetry._request_size.record(request_size, attributes, exemplar_context)
        if response_size is not None:
            telemetry._response_size.record(response_size, attributes, exemplar_context)
        if old is not None and telemetry._old_duration is not None:
            telemetry._old_duration.record(elapsed * 1000.0, old, exemplar_context)
            if request_size is not None and telemetry._old_request_size is not None:
                telemetry._old_request_size.record(request_size, old, exemplar_context)
            if response_size is not None and telemetry._old_response_size is not None:
                telemetry._old_response_size.record(response_size, old, exemplar_context)

    def _metric_attribute_sets(self, key: tuple[Any, ...]) -> _MetricAttributes:
        """The metric attribute sets (stable, pre-stable or None) of this request's shape, cached (bounded)."""
        attributes: dict[str, AttributeValue] = {HTTP_REQUEST_METHOD: self.method}
        if self.server_address:
            attributes[SERVER_ADDRESS] = self.server_address
        if self.server_port is not None:
            attributes[SERVER_PORT] = self.server_port
        if self.status_code is not None:
            attributes[HTTP_RESPONSE_STATUS_CODE] = self.status_code
        if self.protocol_version:
            attributes[NETWORK_PROTOCOL_VERSION] = self.protocol_version
        if self.error_type is not None:
            attributes[ERROR_TYPE] = self.error_type
        old: dict[str, AttributeValue] | None = None
        if self.telemetry._old_duration is not None:
            old = {HTTP_METHOD: self.original_method}
            if self.scheme:
                old[HTTP_SCHEME] = self.scheme
            if self.server_address:
                old[NET_PEER_NAME] = self.server_address
            if self.server_port is not None:
                old[NET_PEER_PORT] = self.server_port
            if self.status_code is not None:
                old[HTTP_STATUS_CODE] = self.status_code
            if self.protocol_version:
                old[HTTP_FLAVOR] = self.protocol_version
        cached = (attributes, old)
        sets = self.telemetry._metric_attributes
        if len(sets) >= _CACHE_LIMIT:
            sets.clear()  # server.address is the caller's: never let the cache grow without bound
        sets[key] = cached
        return cached


def protocol_version_of(http_version: str | int | None) -> str | None:
    """network.protocol.version from `HTTP/1.1`, `HTTP/2`, 11, 20 (the shapes client libraries use)."""
    if http_version is None:
        return None
    if isinstance(http_version, int):
        return {9: "0.9", 10: "1.0", 11: "1.1", 20: "2", 30: "3"}.get(http_version)
    version = _PROTOCOL_VERSIONS.get(http_version)
    if version is None and http_version.startswith("HTTP/"):
        version = http_version[5:]
    return version


class BodyCompletion:
    """Ends a client request when an `http.client.HTTPResponse` body is fully read or closed.

    Used by urllib, urllib3 and requests: the stdlib response calls `_close_conn` at end of body and on
    close; this per-response override (an instance attribute, the class is untouched) finishes the span then.
    """

    __slots__ = ("_original", "_request")

    def __init__(self, request: ClientRequest, original: Callable[[], None]) -> None:
        self._request = request
        self._original = original

    def __call__(self) -> None:
        try:
            self._original()
        finally:
            self._request.finish()

    @staticmethod
    def attach(request: ClientRequest, raw: Any) -> None:
        """Finish `request` when `raw` (http.client.HTTPResponse or None) completes; now if it already has."""
        try:
            if raw is None or getattr(raw, "fp", None) is None or not hasattr(raw, "_close_conn"):
                request.finish()
                return
            raw._close_conn = BodyCompletion(request, raw._close_conn)
        except Exception:
            log_once("http.client.body", "veil: cannot follow an HTTP response body", exc_info=True)
            request.finish()


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
    config = client_config(
        library,
        excluded_urls=options.get("excluded_urls"),
        request_hook=options.get("request_hook"),
        response_hook=options.get("response_hook"),
        capture_request_headers=options.get("capture_request_headers"),
        capture_response_headers=options.get("capture_response_headers"),
        sanitize_fields=options.get("sanitize_fields"),
        sensitive_query_parameters=options.get("sensitive_query_parameters"),
    )
    return ClientTelemetry(
        instrumenting_module,
        config,
        options.get("tracer_provider"),
        options.get("meter_provider"),
        async_request_hook=options.get("async_request_hook") if asynchronous else None,
        async_response_hook=options.get("async_response_hook") if asynchronous else None,
    )
