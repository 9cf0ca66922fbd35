"""ASGI (3.0): one SERVER span and the HTTP server metrics per request, for any ASGI application.

Use `VeilASGIMiddleware(app)` around an application, or `ASGIInstrumentor().instrument_app(app)`. Starlette and
FastAPI have their own instrumentations (no middleware to add, and mounted prefixes tracked); they share the
per-request path here, `trace_asgi_call`.

Recorded: the stable HTTP server attributes (see `veil.instrumentation._http`), the query redacted at the
source, captured headers with sensitive values redacted, http.server.request.duration / active_requests /
request and response body sizes. `http.route` comes from the route the framework matched, read from the
scope after routing (`scope["route"].path_format` with mounted prefixes; FastAPI's effective route for
included routers), never by matching routes again; the span is renamed `{method} {route}`.

Streaming-safe: the span and the duration end when the last body message (`more_body` false, or the last
trailers) has been handed to the server, or when the application returns (client disconnect, cancellation)
— never at the first chunk, and there are no per-message spans. An optional `veil.response.first_byte` event
marks the first body byte. A websocket connection is one span from handshake to close (no metrics: a
connection's lifetime is not a request duration). An exception is recorded once, reported as 500 when no
response was started, and re-raised untouched. Everything about a request lives in a per-request object.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from functools import partial
from typing import Any, Final, TypeAlias

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_NAME
from opentelemetry.trace import SpanKind, TracerProvider

from veil._guard import log_once
from veil.instrumentation._http import (
    MiddlewareInstrumentor,
    RequestHook,
    ResponseHook,
    ServerRequest,
    ServerTelemetry,
    config_from_options,
    decode_scope_headers,
    finish_guarded,
    start_scope,
)
from veil.security.blocking import ASGI_FORBIDDEN_HEADERS, FORBIDDEN_BODY, was_blocked
from veil.security.findings import Blocked

__all__ = [
    "FIRST_BYTE_EVENT",
    "ASGIInstrumentor",
    "ASGITelemetry",
    "VeilASGIMiddleware",
    "trace_asgi_call",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

FIRST_BYTE_EVENT: Final = "veil.response.first_byte"
"""Span event added when the first response body byte is handed to the server (option `first_byte_event`)."""

STATE_KEY: Final = "veil.asgi"
"""Scope key holding the request's `_Exchange` (None when excluded): nested veil layers step aside."""

_FASTAPI_TELEMETRY_KEY: Final = "fastapi.telemetry"
_TRACED_SCOPES: Final = frozenset({"http", "websocket"})
_INSTRUMENTING_MODULE: Final = "veil.instrumentation.asgi"


class ASGITelemetry:
    """Tracer, metric instruments and options of one ASGI instrumentation; built once, never per request."""

    __slots__ = ("first_byte_event", "http", "keep_response_headers", "websocket")

    def __init__(self, instrumenting_module: str, library: str, options: Mapping[str, Any]) -> None:
        """`options`: those of `VeilASGIMiddleware` (absent or None = settings), checked by the caller."""
        config = config_from_options("server", library, options)
        tracer_provider: TracerProvider | None = options.get("tracer_provider")
        self.http = ServerTelemetry(instrumenting_module, config, tracer_provider, options.get("meter_provider"))
        # Same tracer and options, no metrics: a websocket connection is not an HTTP request duration.
        self.websocket = ServerTelemetry(instrumenting_module, config, tracer_provider, NoOpMeterProvider())
        self.first_byte_event: bool = options.get("first_byte_event", False)
        self.keep_response_headers = config.response_headers is not None or config.response_hook is not None


class _Exchange:
    """One traced request or websocket connection: the ASGI side of its `ServerRequest`.

    Created per request and referenced only from that request's scope and coroutine frames.
    """

    __slots__ = (
        "_send",
        "first_byte_pending",
        "forbidden",
        "keep_response_headers",
        "last_mount",
        "mount_prefix",
        "request",
        "root_path",
        "scope",
        "trailers",
        "websocket",
    )

    def __init__(
        self, request: ServerRequest, scope: Scope, send: Send, telemetry: ASGITelemetry, websocket: bool
    ) -> None:
        self.request = request
        self.scope: Scope | None = scope
        self._send = send
        self.websocket = websocket
        self.first_byte_pending = telemetry.first_byte_event
        self.keep_response_headers = telemetry.keep_response_headers
        self.trailers = False
        self.forbidden: bool | str = False
        self.root_path: str = scope.get("root_path", "")
        # Filled by the Starlette Mount patch (veil.instrumentation.starlette) when it is installed.
        self.mount_prefix: str | None = None
        self.last_mount: object = None

    def note_mount(self, mount: object, path_format: str) -> None:
        """A mount matched: remember its template prefix (`/users/{id}` of `/users/{id}/{path}`)."""
        prefix = path_format[: -len("/{path}")] if path_format.endswith("/{path}") else path_format
        self.mount_prefix = (self.mount_prefix or "") + prefix
        self.last_mount = mount

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self.forbidden:  # the error page of a blocked request is replaced by the 403 text, once
                if self.forbidden is True:
                    self.forbidden = "sent"
                    message = {"type": kind, "body": FORBIDDEN_BODY, "more_body": False}
                else:
                    return
            body = message.get("body")
            if body:
                self.request.add_response_bytes(len(body))
                if self.first_byte_pending:
                    self.first_byte_pending = False
                    self._first_byte()
            await self._send(message)
            if not message.get("more_body", False) and not self.trailers:
                self.complete()
            return
        if kind == "http.response.start":
            if message.get("status", 0) >= 500 and was_blocked(self.request.security_scope):
                message = {**message, "status": 403, "headers": ASGI_FORBIDDEN_HEADERS}  # block mode
                self.forbidden = True
            self._response_start(message)
            await self._send(message)
            return
        await self._send(message)
        if kind == "http.response.trailers":
            if not message.get("more_trailers", False):
                self.complete()
        elif kind == "http.response.pathsend":
            self.complete()
        elif kind == "websocket.accept":
            self.request.set_status(101)
        elif kind == "websocket.http.response.start":
            self._response_start(message)
        elif kind == "websocket.close" and self.request.status_code is None:
            self.request.set_status(403)  # closed before accepting: the server answers 403

    def _response_start(self, message: Message) -> None:
        try:
            self.request.set_status(int(message["status"]))
            self.trailers = bool(message.get("trailers", False))
            if self.keep_response_headers:
                self.request.set_response_headers(decode_scope_headers(message.get("headers") or ()), message)
        except Exception:
            log_once("asgi.response_start", "veil: failed to read an ASGI response start", exc_info=True)

    def _first_byte(self) -> None:
        try:
            span = self.request.span
            if span.is_recording():
                span.add_event(FIRST_BYTE_EVENT)
        except Exception:
            log_once("asgi.first_byte", "veil: failed to record the first response byte", exc_info=True)

    def complete(self) -> None:
        """The response is complete: record the route, end the span and the metrics (once)."""
        request = self.request
        if request.finished:
            return
        status = request.status_code
        if status is not None and status >= 500 and not self.websocket:
            # An error response may be followed by the exception that caused it (Starlette's
            # ServerErrorMiddleware sends the 500, then re-raises): end when the application returns.
            return
        self.finish()

    def finish(self) -> None:
        request = self.request
        scope = self.scope
        if request.finished or scope is None:
            return
        try:
            request.set_route(route_template(scope, self))
        except Exception:
            log_once("asgi.route", "veil: failed to read the route of an ASGI request", exc_info=True)
        finish_guarded(request)
        # The scope holds this exchange (STATE_KEY): letting go of the scope leaves no reference cycle, so the
        # request, its span and the scope are freed when the server drops the scope, not by the cyclic collector.
        self.scope = None

    def fail(self, exception: BaseException) -> None:
        try:
            if isinstance(exception, Exception) and not (self.websocket and _normal_close(exception)):
                self.request.record_exception(exception)
            self.finish()
        except Exception:
            log_once("asgi.fail", "veil: failed to record an ASGI exception", exc_info=True)


def _normal_close(exception: BaseException) -> bool:
    """A websocket disconnect with a normal code (1000 / 1001) is how connections end, not an error."""
    return type(exception).__name__ == "WebSocketDisconnect" and getattr(exception, "code", None) in (1000, 1001)


def route_template(scope: Scope, exchange: _Exchange | None = None) -> str | None:
    """The template of the route the framework matched for this scope, with mounted prefixes; None if none.

    Reads what routing left in the scope: FastAPI's effective route (which knows included routers'
    prefixes), else `scope["route"].path_format` (Starlette and FastAPI). Mounted prefixes come from the
    Mount patch when the Starlette/FastAPI instrumentation is active (a `root_path` an application sets for
    itself, like `FastAPI(root_path=...)`, is then not part of the route), else from the concrete
    `root_path` added since the request entered veil.
    """
    route = scope.get("route")
    template: str | None = None
    selected: object = route
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        effective = fastapi_scope.get("effective_route_context")
        if effective is not None and (
            route is None or route is getattr(effective, "original_route", None) or not _has_template(route)
        ):
            starlette_route = getattr(effective, "starlette_route", None)
            selected = starlette_route if starlette_route is not None else effective
            template = getattr(selected, "path_format", None) or None
    if template is None:
        if route is None:
            return None
        template = getattr(route, "path_format", None)
        if not isinstance(template, str) or not template:
            return None
    if exchange is None:
        return template
    if _mounts_tracked:
        prefix = exchange.mount_prefix
        if prefix is None:
            return template
        if selected is exchange.last_mount:
            return prefix + "/{path}"
        return prefix + template
    root_path: str = scope.get("root_path", "")
    if root_path and root_path != exchange.root_path and root_path.startswith(exchange.root_path):
        return root_path[len(exchange.root_path) :].rstrip("/") + template
    return template


_mounts_tracked = False


def set_mount_tracking(enabled: bool) -> None:
    """Whether mounted prefixes are recorded by a patch (`note_mount`) rather than guessed from `root_path`."""
    global _mounts_tracked
    _mounts_tracked = enabled


def _has_template(route: object) -> bool:
    return isinstance(getattr(route, "path_format", None), str)


def _server_span_active() -> bool:
    span = trace.get_current_span()
    return span.is_recording() and getattr(span, "kind", None) is SpanKind.SERVER


async def trace_asgi_call(telemetry: ASGITelemetry, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Call an ASGI application inside one SERVER span (the shared path of the middleware and frameworks).

    Steps aside (calls `app` untouched) for lifespan and unknown scope types, for a scope another veil layer
    already handles (mounted sub-applications, nested middleware), and when a SERVER span is already active.
    """
    kind = scope.get("type")
    if kind not in _TRACED_SCOPES or STATE_KEY in scope or _server_span_active():
        await app(scope, receive, send)
        return
    websocket = kind == "websocket"
    exchange: _Exchange | None = None
    try:
        if websocket:
            request = start_scope(telemetry.websocket, scope, method="GET")
        else:
            request = start_scope(telemetry.http, scope)
        if request is not None:
            exchange = _Exchange(request, scope, send, telemetry, websocket)
            if request.security_pending is not None:  # the route while the handler runs (veil.security)
                request.security_route = partial(route_template, scope, exchange)
            if websocket and request.span.is_recording():
                request.span.set_attribute(NETWORK_PROTOCOL_NAME, "websocket")
        scope[STATE_KEY] = exchange
        # FastAPI >= 0.16x traces natively when a global provider is set; veil's span is this request's one.
        if _FASTAPI_TELEMETRY_KEY not in scope:
            scope[_FASTAPI_TELEMETRY_KEY] = None
    except Exception:
        log_once("asgi.start", "veil: failed to start an ASGI server span", exc_info=True)
        exchange = None
    if exchange is None:
        await app(scope, receive, send)
        return

    token = exchange.request.attach()
    try:
        await app(scope, receive, exchange.send)
    except BaseException as exception:
        if isinstance(exception, Blocked) and not websocket and exchange.request.status_code in (None, 403):
            if exchange.request.status_code is None:  # nothing answered yet: veil answers 403
                await exchange.send({"type": "http.response.start", "status": 403, "headers": ASGI_FORBIDDEN_HEADERS})
                await exchange.send({"type": "http.response.body", "body": FORBIDDEN_BODY})
            return
        exchange.fail(exception)
        raise
    finally:
        exchange.finish()
        exchange.request.detach(token)


class VeilASGIMiddleware:
    """ASGI middleware: one SERVER span per request (or websocket connection) and the HTTP server metrics.

    Options are resolved once, here: `excluded_urls` (regexes searched in the full URL; default
    OTEL_PYTHON_EXCLUDED_URLS), `request_hook(span, RequestInfo)`, `response_hook(span, RequestInfo,
    ResponseInfo)` (`native` is the scope / the response-start message), `capture_request_headers` /
    `capture_response_headers` (default the OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_* variables),
    `sanitize_fields` (more header names whose values are redacted), `first_byte_event` (add a
    `veil.response.first_byte` span event), and explicit `tracer_provider` / `meter_provider`.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        excluded_urls: str | Sequence[str] | None = None,
        request_hook: RequestHook | None = None,
        response_hook: ResponseHook | None = None,
        capture_request_headers: Sequence[str] | None = None,
        capture_response_headers: Sequence[str] | None = None,
        sanitize_fields: Sequence[str] | None = None,
        first_byte_event: bool = False,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.app = app
        self._telemetry = ASGITelemetry(
            _INSTRUMENTING_MODULE,
            "asgi",
            {
                "excluded_urls": excluded_urls,
                "request_hook": request_hook,
                "response_hook": response_hook,
                "capture_request_headers": capture_request_headers,
                "capture_response_headers": capture_response_headers,
                "sanitize_fields": sanitize_fields,
                "first_byte_event": first_byte_event,
                "tracer_provider": tracer_provider,
                "meter_provider": meter_provider,
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await trace_asgi_call(self._telemetry, self.app, scope, receive, send)


class ASGIInstrumentor(MiddlewareInstrumentor):
    """ASGI has no global entry point to patch: `instrument_app(app)` wraps one application.

    `instrument(**options)` records default options (providers, hooks, header capture) that
    `instrument_app` uses when it is not given its own.
    """

    @classmethod
    def instrument_app(cls, app: ASGIApp, **options: Any) -> VeilASGIMiddleware:
        """Return `app` wrapped in `VeilASGIMiddleware` with `options` (over the instrument() defaults)."""
        return cls._wrap(VeilASGIMiddleware, app, options)
