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

from typing import Final

from veil.instrumentation.starlette import AppCall, ASGIFrameworkInstrumentor

__all__ = ["FastAPIInstrumentor"]

_INSTRUMENTING_MODULE: Final = "veil.instrumentation.fastapi"
_instruments = ("fastapi >= 0.100, < 2",)


class FastAPIInstrumentor(ASGIFrameworkInstrumentor):
    """Traces every FastAPI application (`instrument()`) or one (`instrument_app(app)`).

    Options (both ways): `excluded_urls` (default OTEL_PYTHON_FASTAPI_EXCLUDED_URLS, else
    OTEL_PYTHON_EXCLUDED_URLS), `request_hook(span, RequestInfo)`, `response_hook(span, RequestInfo,
    ResponseInfo)`, `capture_request_headers` / `capture_response_headers`, `sanitize_fields`,
    `first_byte_event`, `tracer_provider`, `meter_provider`.
    """

    _library = "fastapi"
    _module = _INSTRUMENTING_MODULE
    _dependencies = _instruments
    _target = ("fastapi.applications", "FastAPI")
    _call = AppCall()
