"""The state of ONE outbound request, from `ClientTelemetry.start` to `finish()`; never shared.

Propagation into the library's own copy of the headers, the library call with the span active (`run` /
`run_async`), the response (`set_response`), and the end, which may come later, when the body is read
(`BodyCompletion` for http.client responses, `FinishAfter` for any close/release method).

`ClientShape` is what the requests of one (method, scheme, server address, port) share and is built once per
telemetry: span name, start attributes and metric attribute sets, so a request only copies a small dict.
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Setter, default_setter
from opentelemetry.semconv._incubating.attributes.http_attributes import HTTP_FLAVOR, HTTP_STATUS_CODE
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_RESEND_COUNT,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from veil._cache import remember
from veil._guard import log_once
from veil._sdk import SUPPRESS_HTTP_INSTRUMENTATION_KEY
from veil.instrumentation._http.config import HTTPConfig
from veil.instrumentation._http.hooks import RequestInfo, ResponseInfo, call_response_hook, joined_headers
from veil.instrumentation._http.semconv import (
    MetricAttributes,
    client_metric_attributes,
    client_start_attributes,
    client_status_is_error,
    error_type_of,
    normalize_method,
    span_name,
)
from veil.instrumentation._http.wire import content_length, protocol_version_of
from veil.propagation import api_module

if TYPE_CHECKING:
    from veil.instrumentation._http.client import ClientTelemetry

propagate = api_module()

_SCRUB_QUERY: Final = re.compile(r"\?([^\s'\"#)<>]*=[^\s'\"#)<>]*)")
_AUTHORITY_USERINFO: Final = re.compile(r"(?<=://)[^/\s@'\"]+@")
_DEFAULT_SETTER: Final = default_setter
_perf_counter = time.perf_counter
OUTCOME_LIMIT: Final = 64
"""Metric attribute sets a `ClientShape` keeps (distinct status / protocol / error.type outcomes)."""
_attach = otel_context.attach
_detach = otel_context.detach
_set_value = otel_context.set_value


def scrub_error_text(text: str, config: HTTPConfig) -> str:
    """An exception message or traceback without URL credentials or sensitive query values."""
    if config.sensitive_query_parameters is None:
        return text
    if "@" in text:
        text = _AUTHORITY_USERINFO.sub("REDACTED:REDACTED@", text)
    if "?" in text:
        text = _SCRUB_QUERY.sub(lambda match: "?" + config.redact_query(match.group(1)), text)
    return text


class ClientShape:
    """What every request of one (method, scheme, server address, port) shares, built once per telemetry:
    the span name and start attributes (without the URL), and the metric attribute sets per outcome.
    """

    __slots__ = (
        "attributes",
        "method",
        "name",
        "original_method",
        "outcomes",
        "scheme",
        "server_address",
        "server_port",
    )

    def __init__(
        self, method: str, scheme: str | None, server_address: str | None, server_port: int | None, dup: bool
    ) -> None:
        normalized = normalize_method(method)
        self.method = normalized
        self.original_method = method
        self.scheme = scheme
        self.server_address = server_address
        self.server_port = server_port
        self.name = span_name(normalized, None)
        self.attributes = client_start_attributes(normalized, method, server_address, server_port, dup)
        """Start attributes without url.full: copied per request, never mutated."""
        self.outcomes: dict[tuple[int | None, str | None, str | None], MetricAttributes] = {}
        """(status, protocol version, error.type) -> metric attribute sets; bounded by `OUTCOME_LIMIT`."""

    def metric_attributes(
        self, status: int | None, protocol_version: str | None, error_type: str | None, dup: bool
    ) -> MetricAttributes:
        """The metric attribute sets of a request of this shape that ended so (cached, bounded)."""
        key = (status, protocol_version, error_type)
        cached = self.outcomes.get(key)
        if cached is None:
            full_key = (
                self.method,
                self.original_method,
                self.scheme,
                self.server_address,
                self.server_port,
                status,
                protocol_version,
                error_type,
            )
            cached = remember(self.outcomes, key, client_metric_attributes(full_key, dup), OUTCOME_LIMIT)
        return cached


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
        "protocol_version",
        "request_body_size",
        "resend_count",
        "response_body_size",
        "shape",
        "span",
        "status_code",
        "telemetry",
    )

    def __init__(
        self,
        telemetry: ClientTelemetry,
        span: Span,
        parent: otel_context.Context,
        shape: ClientShape,
        request_body_size: int | None,
    ) -> None:
        self.telemetry = telemetry
        self.span = span
        self.context = trace.set_span_in_context(span, parent)
        self.shape = shape
        self.status_code: int | None = None
        self.protocol_version: str | None = None
        self.resend_count = 0
        self.error_type: str | None = None
        self.request_body_size = request_body_size
        self.response_body_size: int | None = None
        self.info: RequestInfo | None = None
        self.finished = False
        self._start = _perf_counter()

    @property
    def method(self) -> str:
        """http.request.method (normalized: `_OTHER` for an unknown method)."""
        return self.shape.method

    @property
    def original_method(self) -> str:
        return self.shape.original_method

    @property
    def scheme(self) -> str | None:
        return self.shape.scheme

    @property
    def server_address(self) -> str | None:
        return self.shape.server_address

    @property
    def server_port(self) -> int | None:
        return self.shape.server_port

    # -- context

    def inject(self, carrier: Any, setter: Setter[Any] = _DEFAULT_SETTER) -> None:
        """Write the propagation headers of this request's span into `carrier` (the library's own copy)."""
        propagate.inject(carrier, context=self.context, setter=setter)

    def activate(self, key: str | None = None, value: object = None) -> object:
        """Make the span current and suppress nested HTTP instrumentation; returns a `deactivate` token.

        `key`/`value` add one more context value for the duration (a library's own re-entrancy marker).
        """
        active = otel_context.set_value(SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, self.context)
        if key is not None:
            active = otel_context.set_value(key, value, active)
        return otel_context.attach(active)

    @staticmethod
    def deactivate(token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]

    def run(self, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """`wrapped(*args, **kwargs)` with the span active; an exception ends the span and propagates."""
        token = _attach(_set_value(SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, self.context))  # = activate()
        try:
            return wrapped(*args, **kwargs)
        except BaseException as error:
            self.finish(error)
            raise
        finally:
            _detach(token)

    async def run_async(self, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """As `run` for a coroutine, after awaiting the async request hook inside the active span."""
        token = self.activate()
        try:
            if self.telemetry.async_request_hook is not None:
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
            elapsed = _perf_counter() - self._start
            span = self.span
            status = self.status_code
            if exception is not None:
                self.error_type = error_type_of(exception)
            elif status is not None and client_status_is_error(status):
                self.error_type = str(status)
            try:
                if self.error_type is not None and span.is_recording():
                    span.set_attribute(ERROR_TYPE, self.error_type)
                    if exception is not None:
                        self._record_exception(exception)
                    else:
                        span.set_status(Status(StatusCode.ERROR))
            finally:
                span.end()
            telemetry = self.telemetry
            attributes, old = self.shape.metric_attributes(
                status, self.protocol_version, self.error_type, telemetry.config.dup
            )
            telemetry.metrics.record(
                elapsed, self.request_body_size, self.response_body_size, attributes, old, self.context
            )
        except Exception:
            log_once("http.client.finish", "veil: failed to end an HTTP client span", exc_info=True)

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


class FinishAfter:
    """A per-object replacement of a close/release method: calls the original, then finishes the request."""

    __slots__ = ("_original", "_request")

    def __init__(self, request: ClientRequest, original: Callable[[], Any]) -> None:
        self._request = request
        self._original = original

    def __call__(self) -> Any:
        try:
            return self._original()
        finally:
            self._request.finish()


class BodyCompletion(FinishAfter):
    """Ends a client request when an `http.client.HTTPResponse` body is fully read or closed.

    Used by urllib, urllib3 and requests: the stdlib response calls `_close_conn` at end of body and on
    close; this per-response override (an instance attribute, the class is untouched) finishes the span then.
    """

    __slots__ = ()

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
