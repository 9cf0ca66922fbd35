"""WSGI (PEP 3333): one SERVER span and the HTTP server metrics per request, for any WSGI application.

Use `VeilWSGIMiddleware(app)` around an application, or `WSGIInstrumentor().instrument_app(app)`. Flask and
Django have their own instrumentations (which add the route); this module is what they build on.

Recorded: the stable HTTP server attributes (see `veil.instrumentation._http`), the query redacted at the
source, captured headers with sensitive values redacted, http.server.request.duration / active_requests /
request and response body sizes. A body complete when the application returns it (a list or tuple, or one a
framework marks complete under `COMPLETE_BODY_KEY`, as Flask does for non-streamed responses) ends the span
then, once `start_response` has given the status, so a caller that never reads the body (a test client)
still gets the span and the metrics. A streamed body ends the span when the server has consumed it
(exhausted or closed), never at the first chunk. An exception raised by the application (while called or
while its body is iterated) is recorded once on the span, reported as 500, and re-raised untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, TypeAlias

from opentelemetry.context import attach as _attach
from opentelemetry.context import detach as _detach
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from veil._guard import log_once
from veil.instrumentation._http import (
    MiddlewareInstrumentor,
    RequestHook,
    ResponseHook,
    ServerRequest,
    ServerTelemetry,
    current_server_request,
    fail_guarded,
    finish_guarded,
    server_telemetry,
)
from veil.security.blocking import FORBIDDEN_BODY, FORBIDDEN_HEADERS, FORBIDDEN_STATUS
from veil.security.findings import Blocked

__all__ = ["COMPLETE_BODY_KEY", "VeilWSGIMiddleware", "WSGIInstrumentor", "trace_wsgi_call"]

_ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse: TypeAlias = Callable[..., Callable[[bytes], object]]
WSGIApplication: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
RouteOf: TypeAlias = Callable[[Mapping[str, Any]], "str | None"]

_INSTRUMENTING_MODULE = "veil.instrumentation.wsgi"

COMPLETE_BODY_KEY: Final = "veil.wsgi.complete_body"
"""Environ key a framework adapter sets while the application runs when the body it is about to return is
already complete (not streamed); its value is the body size in bytes, or None if unknown."""
_NOT_MARKED: Final = object()


class _Exchange:
    """One traced WSGI call: the `start_response` handed to the application and the body returned to the server.

    As `start_response` it records the status and headers, then calls the server's. As the response iterable
    it ends the request when the body is exhausted or closed; the request's context is current while the
    application's iterable produces each chunk, so spans made by a streaming generator are children of the
    SERVER span. Holds only this request's state (one object per request instead of a closure and a wrapper).
    """

    __slots__ = ("_environ", "_iterable", "_iterator", "_request", "_route_of", "_start_response")

    def __init__(
        self,
        request: ServerRequest,
        start_response: StartResponse,
        environ: Mapping[str, Any],
        route_of: RouteOf | None,
    ) -> None:
        self._request = request
        self._start_response = start_response
        self._environ = environ
        self._route_of = route_of
        self._iterable: Iterable[bytes] = ()
        self._iterator: Iterator[bytes] | None = None

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        request = self._request
        code = status[:3] if isinstance(status, str) else ""
        if (
            code.isascii() and code.isdigit()
        ):  # a malformed status line is the server's to reject; the span just has no code
            request.status_code = int(code)
        request.response_headers = headers
        request.response_native = (status, headers)
        if self._route_of is not None:  # the framework still holds its matched request here
            _set_route(request, self._route_of, self._environ)
        if exc_info is None:
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> _Exchange:
        return self

    def __next__(self) -> bytes:
        request = self._request
        token = _attach(request.context)
        try:
            iterator = self._iterator
            if iterator is None:
                iterator = self._iterator = iter(self._iterable)
            chunk = next(iterator)
        except StopIteration:
            finish_guarded(request)
            raise
        except BaseException as exception:
            fail_guarded(request, exception)
            raise
        finally:
            _detach(token)
        try:
            size = len(chunk)
        except Exception:  # a non-bytes chunk is the server's problem to report, not ours
            return chunk
        total = request.response_body_size
        request.response_body_size = size if total is None else total + size
        return chunk

    def close(self) -> None:
        request = self._request
        close = getattr(self._iterable, "close", None)
        try:
            if close is not None:
                close()
        except BaseException as exception:
            fail_guarded(request, exception)
            raise
        finally:
            if not request.finished:
                finish_guarded(request)


def trace_wsgi_call(
    telemetry: ServerTelemetry,
    call: WSGIApplication,
    environ: dict[str, Any],
    start_response: StartResponse,
    route_of: RouteOf | None = None,
) -> Iterable[bytes]:
    """Call a WSGI application inside one SERVER span (the shared path of WSGI middleware and Flask).

    `route_of(environ)` is asked for the route template when the application calls `start_response` (the
    framework still holds its matched request then) and, if that found none, once the application has
    returned or raised. If a veil SERVER span is already active, no second one is started: the route
    enriches the outer one.
    """
    outer = current_server_request()
    if outer is not None:
        if route_of is None:
            return call(environ, start_response)
        try:
            return call(environ, _RouteAtStart(outer, route_of, environ, start_response))
        finally:
            if outer.route is None:
                _set_route(outer, route_of, environ)

    try:
        request = telemetry.start_environ(environ)
    except Exception:
        log_once("wsgi.start", "veil: failed to start a WSGI server span", exc_info=True)
        request = None
    if request is None:
        return call(environ, start_response)

    if route_of is not None and request.security_pending is not None:  # the route while the handler runs
        request.security_route = lambda: route_of(environ)
    exchange = _Exchange(request, start_response, environ, route_of)
    token = _attach(request.context)
    try:
        exchange._iterable = call(environ, exchange)
    except BaseException as exception:
        if route_of is not None and request.route is None:
            _set_route(request, route_of, environ)
        if isinstance(exception, Blocked):  # block mode: the call was refused, the request gets 403
            exchange(FORBIDDEN_STATUS, list(FORBIDDEN_HEADERS), sys.exc_info())  # type: ignore[arg-type]
            exchange._iterable = [FORBIDDEN_BODY]
            return exchange
        fail_guarded(request, exception)
        raise
    finally:
        _detach(token)
    if route_of is not None and request.route is None:
        _set_route(request, route_of, environ)
    if request.response_native is not None and _complete_body(request, exchange._iterable, environ):
        finish_guarded(request)  # nothing is left to stream: the server gets the body itself, unwrapped
        return exchange._iterable
    return exchange


def _complete_body(request: ServerRequest, body: Iterable[bytes], environ: dict[str, Any]) -> bool:
    """Whether `body` is complete already (then its size is recorded): a list, a tuple, or marked so."""
    marked = environ.pop(COMPLETE_BODY_KEY, _NOT_MARKED)
    if type(body) is list or type(body) is tuple:
        try:
            request.response_body_size = sum(len(chunk) for chunk in body) if body else None
        except Exception:  # a non-bytes chunk is the server's problem to report, not ours
            request.response_body_size = None
        return True
    if marked is _NOT_MARKED:
        return False
    request.response_body_size = marked if type(marked) is int else None
    return True


class _RouteAtStart:
    """The `start_response` given to an application nested in an outer veil span: reads the route, then calls."""

    __slots__ = ("_environ", "_request", "_route_of", "_start_response")

    def __init__(
        self, request: ServerRequest, route_of: RouteOf, environ: Mapping[str, Any], start_response: StartResponse
    ) -> None:
        self._request = request
        self._route_of = route_of
        self._environ = environ
        self._start_response = start_response

    def __call__(self, *args: Any) -> Callable[[bytes], object]:
        _set_route(self._request, self._route_of, self._environ)
        return self._start_response(*args)


def _set_route(request: ServerRequest, route_of: RouteOf, environ: Mapping[str, Any]) -> None:
    try:
        request.set_route(route_of(environ))
    except Exception:
        log_once("wsgi.route", "veil: failed to read the route of a request", exc_info=True)


class VeilWSGIMiddleware:
    """WSGI middleware: one SERVER span per request and the HTTP server metrics.

    Options are resolved once, here: `excluded_urls` (regexes searched in the full URL; default
    OTEL_PYTHON_EXCLUDED_URLS), `request_hook(span, RequestInfo)`, `response_hook(span, RequestInfo,
    ResponseInfo)`, `capture_request_headers` / `capture_response_headers` (default the
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_* variables), `sanitize_fields` (more header names whose
    values are redacted), and explicit `tracer_provider` / `meter_provider` (default the global ones).
    Span names are `{method}`: plain WSGI has no route template (the path would be high-cardinality).
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        excluded_urls: str | Sequence[str] | None = None,
        request_hook: RequestHook | None = None,
        response_hook: ResponseHook | None = None,
        capture_request_headers: Sequence[str] | None = None,
        capture_response_headers: Sequence[str] | None = None,
        sanitize_fields: Sequence[str] | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.app = app
        self._telemetry = server_telemetry(
            "wsgi",
            _INSTRUMENTING_MODULE,
            {
                "excluded_urls": excluded_urls,
                "request_hook": request_hook,
                "response_hook": response_hook,
                "capture_request_headers": capture_request_headers,
                "capture_response_headers": capture_response_headers,
                "sanitize_fields": sanitize_fields,
                "tracer_provider": tracer_provider,
                "meter_provider": meter_provider,
            },
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return trace_wsgi_call(self._telemetry, self.app, environ, start_response)


class WSGIInstrumentor(MiddlewareInstrumentor):
    """WSGI has no global entry point to patch: `instrument_app(app)` wraps one application.

    `instrument(**options)` records default options (providers, hooks, header capture) that
    `instrument_app` uses when it is not given its own.
    """

    @classmethod
    def instrument_app(cls, app: WSGIApplication, **options: Any) -> VeilWSGIMiddleware:
        """Return `app` wrapped in `VeilWSGIMiddleware` with `options` (over the instrument() defaults)."""
        return cls._wrap(VeilWSGIMiddleware, app, options)
