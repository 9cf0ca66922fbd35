"""The state of ONE inbound request, from `ServerTelemetry.start` to `finish()`; never shared.

`current_server_request()` finds the request whose SERVER span is active, so nested layers (Flask inside WSGI
middleware, Django behind an ASGI middleware) enrich it instead of starting a second SERVER span.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry.semconv._incubating.attributes.http_attributes import HTTP_STATUS_CODE
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from veil._cache import remember
from veil._guard import log_once
from veil._sdk import SPAN_KEY
from veil.instrumentation._http.hooks import RequestInfo, ResponseInfo, call_response_hook, joined_headers
from veil.instrumentation._http.semconv import (
    CACHE_LIMIT,
    ActiveKey,
    error_type_of,
    server_metric_attributes,
    span_name,
)
from veil.instrumentation._http.semconv import active_key as _active_key
from veil.security import request as security_request

if TYPE_CHECKING:
    from veil.instrumentation._http.server import ServerTelemetry

SERVER_REQUEST_KEY: Final = otel_context.create_key("veil-server-request")
# Bound once: the per-request paths call these several times.
_perf_counter = time.perf_counter
_ref = weakref.ref
_attach = otel_context.attach
_detach = otel_context.detach


def current_server_request() -> ServerRequest | None:
    """The request whose SERVER span is active in the current context, if it is still running."""
    reference = otel_context.get_value(SERVER_REQUEST_KEY)
    request: ServerRequest | None = reference() if isinstance(reference, _ref) else None
    if request is not None and not request.finished:
        return request
    return None


class ServerRequest:
    """The state of one inbound request: created by `ServerTelemetry.start`, owned by that request only."""

    __slots__ = (
        "__weakref__",
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
        "security_pending",
        "security_route",
        "security_scope",
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
        active_key: ActiveKey | None = None,
    ) -> None:
        self.telemetry = telemetry
        self.span = span
        # what set_span_in_context + set_value would make, in one copy of the parent context. The context holds
        # the request weakly: a strong reference would make request and context a reference cycle, left to the
        # cyclic garbage collector with the span and everything it holds (about 20 objects a request, and the
        # collections they trigger cost more than the rest of the request's bookkeeping)
        self.context = otel_context.Context({**parent, SPAN_KEY: span, SERVER_REQUEST_KEY: _ref(self)})
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
        # veil.security's view: what begin() kept, the scope once built, the framework's route reader
        self.security_pending: tuple[str, str | None, str | None, Any] | None = None
        self.security_scope: security_request.RequestScope | None = None
        self.security_route: Callable[[], str | None] | None = None
        self.finished = False
        self._exception: BaseException | None = None
        self._route_changed = False
        if active_key is None:
            active_key = _active_key(method, original_method, scheme, telemetry.config.dup)
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
        if self.security_pending is not None:
            security_request.end(self)
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
                    response = ResponseInfo(status, joined_headers(self.response_headers or ()), self.response_native)
                    call_response_hook(config.response_hook, span, self.info, response)
        finally:
            span.end()
        self._record_metrics(elapsed, status, error_type)

    def _record_metrics(self, elapsed: float, status: int | None, error_type: str | None) -> None:
        telemetry = self.telemetry
        telemetry.active.add(self._active_key, -1)
        key = (self.method, self.original_method, self.scheme, status, self.route, self.protocol_version, error_type)
        sets = telemetry.metric_attributes
        cached = sets.get(key)
        if cached is None:
            cached = remember(sets, key, server_metric_attributes(key, telemetry.config.dup), CACHE_LIMIT)
        attributes, old = cached
        telemetry.metrics.record(
            elapsed, self.request_body_size, self.response_body_size, attributes, old, self.context
        )


def finish_guarded(request: ServerRequest) -> None:
    """`request.finish()`, never raising into the host application."""
    try:
        request.finish()
    except Exception:
        log_once("http.finish", "veil: failed to end an HTTP server span", exc_info=True)


def fail_guarded(request: ServerRequest, exception: BaseException) -> None:
    """Record the exception that ended the request and finish it, never raising into the host application."""
    try:
        request.record_exception(exception)
        request.finish()
    except Exception:
        log_once("http.fail", "veil: failed to record an HTTP server exception", exc_info=True)
