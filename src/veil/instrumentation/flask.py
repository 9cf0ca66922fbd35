"""Flask (2.2 and later): one SERVER span per request named `{method} {route}` from the matched URL rule.

`FlaskInstrumentor().instrument()` patches `Flask.wsgi_app` on the class, where every request is handled, so
applications created before instrument() (`from flask import Flask` first) are traced too; no class is
swapped. `instrument_app(app, **options)` instruments one application with its own options instead.

Recorded: everything `veil.instrumentation.wsgi` records, plus http.route (`request.url_rule.rule`, e.g.
`/users/<int:user_id>`), read when Flask starts the response (or handles an exception), while it still holds
the matched request: the request path carries no wrapper of its own.
Unhandled exceptions turned into 500 responses by Flask are recorded once on the span; the response stays
what Flask makes of it. Streaming responses (generators, server-sent events) end the span when the body is
finished or closed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from veil._guard import log_once
from veil.instrumentation._http import (
    SERVER_OPTION_NAMES,
    ServerTelemetry,
    checked_options,
    current_server_request,
    server_telemetry,
)
from veil.instrumentation.wsgi import StartResponse, WSGIApplication, trace_wsgi_call
from veil.security.blocking import FORBIDDEN_BODY
from veil.security.findings import Blocked

__all__ = ["FlaskInstrumentor"]

_instruments = ("flask >= 2.2",)
_INSTRUMENTING_MODULE = "veil.instrumentation.flask"
_APP_MARKER = "_veil_flask_wsgi_app"


class _State:
    """Module state set at instrument time (never per request)."""

    telemetry: ServerTelemetry | None = None
    exception_patch_users = 0
    request_proxy: Any = None


def _build_telemetry(owner: str, options: dict[str, Any]) -> ServerTelemetry:
    return server_telemetry("flask", _INSTRUMENTING_MODULE, checked_options(owner, options, SERVER_OPTION_NAMES))


def _wsgi_app_wrapper(wrapped: WSGIApplication, instance: Any, args: Any, kwargs: Any) -> Iterable[bytes]:
    telemetry = _State.telemetry
    if telemetry is None or len(args) != 2 or kwargs:
        return wrapped(*args, **kwargs)
    return trace_wsgi_call(telemetry, wrapped, args[0], args[1], _route_of)


def _route_of(environ: Mapping[str, Any]) -> str | None:
    """The matched URL rule of the request Flask is handling (werkzeug keeps it in the environ until then)."""
    rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
    return None if rule is None else str(rule.rule)


def _flask_request() -> Any:
    """`flask.request` (the context-local proxy), looked up once instead of importing per request."""
    proxy = _State.request_proxy
    if proxy is None:
        import flask

        proxy = _State.request_proxy = flask.request
    return proxy


def _handle_exception_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = current_server_request()
    if args and isinstance(args[0], Blocked):  # block mode: answer 403, not Flask's 500
        if request is not None:
            request.set_route(_route_of(_flask_request().environ))
        return instance.response_class(FORBIDDEN_BODY, status=403, mimetype="text/plain")
    if request is not None and args and isinstance(args[0], BaseException):
        try:
            request.set_route(_route_of(_flask_request().environ))
            request.record_exception(args[0])
        except Exception:
            log_once("flask.exception", "veil: failed to record a Flask exception", exc_info=True)
    return wrapped(*args, **kwargs)


def _patch_exceptions() -> None:
    if _State.exception_patch_users == 0:
        wrapt.wrap_function_wrapper("flask.app", "Flask.handle_exception", _handle_exception_wrapper)
    _State.exception_patch_users += 1


def _unpatch_exceptions() -> None:
    if _State.exception_patch_users == 0:
        return
    _State.exception_patch_users -= 1
    if _State.exception_patch_users == 0:
        import flask.app

        unwrap(flask.app.Flask, "handle_exception")


class _AppWSGI:
    """The per-application wrapper `instrument_app` puts in `app.wsgi_app`."""

    __slots__ = ("original", "telemetry")

    def __init__(self, original: WSGIApplication, telemetry: ServerTelemetry) -> None:
        self.original = original
        self.telemetry = telemetry

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return trace_wsgi_call(self.telemetry, self.original, environ, start_response, _route_of)


class FlaskInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces every Flask application (instrument()) or one (instrument_app(app)).

    Options (both forms): `excluded_urls` (default OTEL_PYTHON_FLASK_EXCLUDED_URLS, else
    OTEL_PYTHON_EXCLUDED_URLS), `request_hook(span, RequestInfo)`, `response_hook(span, RequestInfo,
    ResponseInfo)` (`RequestInfo.native` is the WSGI environ, `ResponseInfo.native` the (status, headers)
    pair), `capture_request_headers`, `capture_response_headers`, `sanitize_fields`, `tracer_provider`,
    `meter_provider`.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        _State.telemetry = _build_telemetry("FlaskInstrumentor", kwargs)
        wrapt.wrap_function_wrapper("flask.app", "Flask.wsgi_app", _wsgi_app_wrapper)
        _patch_exceptions()

    def _uninstrument(self, **kwargs: Any) -> None:
        import flask.app

        unwrap(flask.app.Flask, "wsgi_app")
        _unpatch_exceptions()
        _State.telemetry = None

    @staticmethod
    def instrument_app(app: Any, **options: Any) -> None:
        """Trace one Flask application with its own options (a second call is a no-op)."""
        if getattr(app, _APP_MARKER, None) is not None:
            log_once("flask.instrument_app", "veil: this Flask app is already instrumented")
            return
        telemetry = _build_telemetry("FlaskInstrumentor", options)
        wrapper = _AppWSGI(app.wsgi_app, telemetry)
        app.wsgi_app = wrapper
        setattr(app, _APP_MARKER, wrapper)
        _patch_exceptions()

    @staticmethod
    def uninstrument_app(app: Any) -> None:
        """Undo `instrument_app(app)`."""
        wrapper = getattr(app, _APP_MARKER, None)
        if not isinstance(wrapper, _AppWSGI):
            return
        if app.wsgi_app is wrapper:
            app.wsgi_app = wrapper.original
        delattr(app, _APP_MARKER)
        _unpatch_exceptions()
