"""The client core shared by httpx, requests, urllib3, urllib and aiohttp: one CLIENT span per logical request.

`ClientTelemetry` is built once per instrumentation or instrumented client; `ClientRequest` is the state of
one outbound request, from `start()` through the library call (`run` / `run_async`) and the response to
`finish()`, which may come later, when the body is read (`BodyCompletion` for http.client responses).
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY, _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.metrics import MeterProvider
from opentelemetry.propagators.textmap import Setter, default_setter
from opentelemetry.semconv._incubating.attributes.http_attributes import (
    HTTP_FLAVOR,
    HTTP_METHOD,
    HTTP_STATUS_CODE,
    HTTP_URL,
)
from opentelemetry.semconv._incubating.attributes.net_attributes import NET_PEER_NAME, NET_PEER_PORT
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_REQUEST_RESEND_COUNT,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace import TracerProvider as APITracerProvider
from opentelemetry.util.types import AttributeValue

from veil._guard import log_once
from veil._version import __version__
from veil.instrumentation._http.config import HTTPConfig, config_from_options
from veil.instrumentation._http.hooks import (
    AsyncRequestHook,
    AsyncResponseHook,
    RequestInfo,
    ResponseInfo,
    call_request_hook,
    call_response_hook,
    joined_headers,
)
from veil.instrumentation._http.metrics import RequestMetrics
from veil.instrumentation._http.semconv import (
    SCHEMA_URL,
    MetricAttributes,
    client_metric_attributes,
    client_status_is_error,
    error_type_of,
    normalize_method,
    remember,
    span_name,
)
from veil.instrumentation._http.wire import DEFAULT_PORTS, content_length, protocol_version_of, split_url
from veil.propagation import api_module

propagate = api_module()

_SCRUB_QUERY: Final = re.compile(r"\?([^\s'\"#)<>]*=[^\s'\"#)<>]*)")
_AUTHORITY_USERINFO: Final = re.compile(r"(?<=://)[^/\s@'\"]+@")
_DEFAULT_SETTER: Final = default_setter
_perf_counter = time.perf_counter


def client_http_enabled(current: otel_context.Context | None = None) -> bool:
    """False inside `suppress_instrumentation()` / `suppress_http_instrumentation()` (exporters, nesting)."""
    if current is None:
        current = otel_context.get_current()
    return not (
        current.get(_SUPPRESS_HTTP_INSTRUMENTATION_KEY)
        or current.get(_SUPPRESS_INSTRUMENTATION_KEY)
        or current.get("suppress_instrumentation")
    )


def scrub_error_text(text: str, config: HTTPConfig) -> str:
    """An exception message or traceback without URL credentials or sensitive query values."""
    if config.sensitive_query_parameters is None:
        return text
    if "@" in text:
        text = _AUTHORITY_USERINFO.sub("REDACTED:REDACTED@", text)
    if "?" in text:
        text = _SCRUB_QUERY.sub(lambda match: "?" + config.redact_query(match.group(1)), text)
    return text


class ClientTelemetry:
    """Tracer, client metric instruments and options of one client instrumentation or instrumented client.

    Built once; holds nothing about any request. `start()` begins the CLIENT span of one logical request.
    """

    __slots__ = (
        "_redact",
        "_sensitive",
        "async_request_hook",
        "async_response_hook",
        "config",
        "metric_attributes",
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
        # (method, original method, scheme, address, port, status, protocol, error.type) -> metric attribute sets
        self.metric_attributes: dict[tuple[Any, ...], MetricAttributes] = {}
        self.tracer = trace.get_tracer(instrumenting_module, __version__, tracer_provider, schema_url=SCHEMA_URL)
        meter = metrics.get_meter(instrumenting_module, __version__, meter_provider, schema_url=SCHEMA_URL)
        self.metrics = RequestMetrics(meter, "client", config.dup)

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
            server_port = DEFAULT_PORTS.get(scheme)
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
                    request.info = RequestInfo(method, redacted, joined_headers(header_list), native)
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
        response = request.run(wrapped, args, kwargs)       # span current, nested HTTP clients suppressed;
                                                            # an exception ends the span and propagates
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
        self._start = _perf_counter()

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

    def run(self, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """`wrapped(*args, **kwargs)` with the span active; an exception ends the span and propagates."""
        token = self.activate()
        try:
            return wrapped(*args, **kwargs)
        except BaseException as error:
            self.finish(error)
            raise
        finally:
            self.deactivate(token)

    async def run_async(self, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """As `run` for a coroutine, after awaiting the async request hook inside the active span."""
        token = self.activate()
        try:
            await self.run_async_request_hook()
            return await wrapped(*args, **kwargs)
        except BaseException as error:
            self.finish(error)
            raise
        finally:
            self.deactivate(token)

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
        response = ResponseInfo(status_code, joined_headers(header_list or ()), native)
        if config.response_hook is not None:
            call_response_hook(config.response_hook, span, self.info, response)
        return response

    def set_mapping_response(
        self, status_code: int, headers: Any, version: str | int | None, resend_count: int, native: object
    ) -> ResponseInfo | None:
        """`set_response` for headers in a case-insensitive mapping (`items()`, `get`) or None, and a version
        such as `HTTP/1.1` or 11: the shapes of http.client, urllib3 and requests responses.
        """
        return self.set_response(
            status_code,
            headers=headers.items if headers is not None else None,
            body_size=content_length(headers.get("Content-Length")) if headers is not None else None,
            protocol_version=protocol_version_of(version),
            resend_count=resend_count,
            native=native,
        )

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
        sets = telemetry.metric_attributes
        cached = sets.get(key)
        if cached is None:
            # server.address is the caller's: the cache is bounded
            cached = remember(sets, key, client_metric_attributes(key, telemetry.config.dup))
        attributes, old = cached
        telemetry.metrics.record(
            elapsed, self.request_body_size, self.response_body_size, attributes, old, self.context
        )


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
    return ClientTelemetry(
        instrumenting_module,
        config_from_options("client", library, options),
        options.get("tracer_provider"),
        options.get("meter_provider"),
        async_request_hook=options.get("async_request_hook") if asynchronous else None,
        async_response_hook=options.get("async_response_hook") if asynchronous else None,
    )
