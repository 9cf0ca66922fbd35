"""FastAPI (>= 0.100, < 2): one SERVER span per request or websocket connection, named `{method} {route}`.

`FastAPIInstrumentor().instrument()` wraps `fastapi.FastAPI.__call__` on the class, so every application is
traced, including ones created with `from fastapi import FastAPI` before `instrument()` (no class swap);
`instrument_app(app, ...)` traces one application with its own options. The route is the template FastAPI
matched, with the prefixes of included routers and mounted applications (`/api/v2/items/{item_id}`), read
from the scope after routing — never by matching every route again.

FastAPI's own OpenTelemetry support (FastAPI >= 0.16x traces natively when a global provider is set) is
switched off for the requests veil traces, so each request has exactly one SERVER span and one set of
metrics. Mounted applications and nested middleware step aside. What is recorded is described in
`veil.instrumentation.asgi`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from veil.instrumentation.asgi import ASGIApp, ASGITelemetry, trace_asgi_call
from veil.instrumentation.starlette import (
    APP_ATTRIBUTE,
    acquire_mount_tracking,
    acquire_patch,
    app_telemetry,
    release_mount_tracking,
    release_patch,
    telemetry_options,
)

__all__ = ["FastAPIInstrumentor"]

_INSTRUMENTING_MODULE: Final = "veil.instrumentation.fastapi"
_instruments = ("fastapi >= 0.100, < 2",)

_global: ASGITelemetry | None = None


def _fastapi_call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    telemetry = app_telemetry(instance)
    if telemetry is None:
        telemetry = _global
        if telemetry is None:
            return wrapped(*args, **kwargs)
    if kwargs or len(args) != 3:
        return wrapped(*args, **kwargs)
    scope, receive, send = args
    return trace_asgi_call(telemetry, wrapped, scope, receive, send)


def _install_call() -> None:
    wrapt.wrap_function_wrapper("fastapi.applications", "FastAPI.__call__", _fastapi_call)


def _remove_call() -> None:
    import fastapi.applications

    unwrap(fastapi.applications.FastAPI, "__call__")


class FastAPIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces every FastAPI application (`instrument()`) or one (`instrument_app(app)`).

    Options (both ways): `excluded_urls` (default OTEL_PYTHON_FASTAPI_EXCLUDED_URLS, else
    OTEL_PYTHON_EXCLUDED_URLS), `request_hook(span, RequestInfo)`, `response_hook(span, RequestInfo,
    ResponseInfo)`, `capture_request_headers` / `capture_response_headers`, `sanitize_fields`,
    `first_byte_event`, `tracer_provider`, `meter_provider`.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        global _global
        options = telemetry_options("FastAPIInstrumentor", kwargs)
        _global = ASGITelemetry(_INSTRUMENTING_MODULE, "fastapi", **options)
        acquire_patch("fastapi.call", _install_call)
        acquire_mount_tracking()

    def _uninstrument(self, **kwargs: Any) -> None:
        global _global
        _global = None
        release_patch("fastapi.call", _remove_call)
        release_mount_tracking()

    @staticmethod
    def instrument_app(app: ASGIApp, **options: Any) -> ASGIApp:
        """Trace `app` (a FastAPI application) with its own options; returns the same object.

        A second call replaces the options; `uninstrument_app(app)` stops tracing it.
        """
        options = telemetry_options("FastAPIInstrumentor.instrument_app", options)
        telemetry = ASGITelemetry(_INSTRUMENTING_MODULE, "fastapi", **options)
        first = APP_ATTRIBUTE not in vars(app)
        setattr(app, APP_ATTRIBUTE, telemetry)
        if first:
            acquire_patch("fastapi.call", _install_call)
            acquire_mount_tracking()
        return app

    @staticmethod
    def uninstrument_app(app: ASGIApp) -> None:
        """Stop tracing an application instrumented with `instrument_app`."""
        if APP_ATTRIBUTE in vars(app):
            delattr(app, APP_ATTRIBUTE)
            release_patch("fastapi.call", _remove_call)
            release_mount_tracking()
