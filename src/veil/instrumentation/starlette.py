"""Starlette (>= 0.27, < 2): one SERVER span per request or websocket connection, named `{method} {route}`.

`StarletteInstrumentor().instrument()` wraps `starlette.applications.Starlette.__call__` on the class, so
every application is traced, including ones created before `instrument()` (no class swap, no middleware to
add); `instrument_app(app, ...)` traces one application with its own options. `Mount.handle` is wrapped too,
so a route inside a mounted application is reported with the mount's template prefix
(`/tenants/{tenant}/items/{id}`), never with the concrete path.

Exactly one SERVER span per request: a mounted Starlette application, or an application behind
`VeilASGIMiddleware`, sees the request already handled and steps aside. FastAPI applications are left to the
`fastapi` instrumentation. What is recorded is described in `veil.instrumentation.asgi`.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any, Final

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from veil._guard import log_once
from veil.errors import ConfigurationError
from veil.instrumentation.asgi import STATE_KEY, ASGIApp, ASGITelemetry, set_mount_tracking, trace_asgi_call

__all__ = ["StarletteInstrumentor"]

_INSTRUMENTING_MODULE: Final = "veil.instrumentation.starlette"
APP_ATTRIBUTE: Final = "_veil_asgi_telemetry"
"""Attribute of an application instrumented with `instrument_app` (its own telemetry and options)."""

_instruments = ("starlette >= 0.27, < 2",)

_global: ASGITelemetry | None = None
_lock = threading.Lock()
_patch_users: dict[str, int] = {}
_is_fastapi: dict[type, bool] = {}


OPTION_NAMES: Final = (
    "capture_request_headers",
    "capture_response_headers",
    "excluded_urls",
    "first_byte_event",
    "meter_provider",
    "request_hook",
    "response_hook",
    "sanitize_fields",
    "tracer_provider",
)
"""The options every Starlette-family instrumentation accepts (those of `VeilASGIMiddleware`)."""


def telemetry_options(owner: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` checked by name: an unknown one raises ConfigurationError naming it and the accepted ones."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ConfigurationError(
            f"{owner}({unknown[0]}=...)", options[unknown[0]], OPTION_NAMES, reason="unknown option"
        )
    return options


# ---------------------------------------------------------------------------------------------- patches


def acquire_patch(name: str, install: Any) -> None:
    """Install patch `name` with `install()` unless already installed; count the users."""
    with _lock:
        count = _patch_users.get(name, 0)
        if count == 0:
            install()
        _patch_users[name] = count + 1


def release_patch(name: str, remove: Any) -> None:
    """Drop one user of patch `name`; remove it with `remove()` when nobody uses it any more."""
    with _lock:
        count = _patch_users.get(name, 0)
        if count <= 1:
            _patch_users.pop(name, None)
            if count == 1:
                remove()
        else:
            _patch_users[name] = count - 1


def _mount_handle(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    scope = args[0] if args else kwargs.get("scope")
    try:
        exchange = scope.get(STATE_KEY) if scope is not None else None
        if exchange is not None:
            exchange.note_mount(instance, instance.path_format)
    except Exception:
        log_once("starlette.mount", "veil: failed to record a mounted route prefix", exc_info=True)
    return wrapped(*args, **kwargs)


def _install_mount() -> None:
    wrapt.wrap_function_wrapper("starlette.routing", "Mount.handle", _mount_handle)
    set_mount_tracking(True)


def _remove_mount() -> None:
    import starlette.routing

    set_mount_tracking(False)
    unwrap(starlette.routing.Mount, "handle")


def acquire_mount_tracking() -> None:
    """Track mounted prefixes (shared by the Starlette and FastAPI instrumentations)."""
    acquire_patch("mount", _install_mount)


def release_mount_tracking() -> None:
    release_patch("mount", _remove_mount)


def app_telemetry(instance: object) -> ASGITelemetry | None:
    """The telemetry `instrument_app` attached to this application, if any (never raises)."""
    attributes = getattr(instance, "__dict__", None)
    if attributes is None:
        return None
    telemetry = attributes.get(APP_ATTRIBUTE)
    return telemetry if isinstance(telemetry, ASGITelemetry) else None


def _fastapi_class(cls: type) -> bool:
    known = _is_fastapi.get(cls)
    if known is None:
        known = any(base.__module__.split(".", 1)[0] == "fastapi" for base in cls.__mro__)
        _is_fastapi[cls] = known
    return known


def _starlette_call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    telemetry = app_telemetry(instance)
    if telemetry is None:
        telemetry = _global
        if telemetry is None or _fastapi_class(type(instance)):
            return wrapped(*args, **kwargs)
    if kwargs or len(args) != 3:
        return wrapped(*args, **kwargs)
    scope, receive, send = args
    return trace_asgi_call(telemetry, wrapped, scope, receive, send)


def _install_call() -> None:
    wrapt.wrap_function_wrapper("starlette.applications", "Starlette.__call__", _starlette_call)


def _remove_call() -> None:
    import starlette.applications

    unwrap(starlette.applications.Starlette, "__call__")


# ---------------------------------------------------------------------------------------- instrumentor


class StarletteInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces every Starlette application (`instrument()`) or one (`instrument_app(app)`).

    Options (both ways): `excluded_urls` (default OTEL_PYTHON_STARLETTE_EXCLUDED_URLS, else
    OTEL_PYTHON_EXCLUDED_URLS), `request_hook(span, RequestInfo)`, `response_hook(span, RequestInfo,
    ResponseInfo)`, `capture_request_headers` / `capture_response_headers`, `sanitize_fields`,
    `first_byte_event`, `tracer_provider`, `meter_provider`.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        global _global
        options = telemetry_options("StarletteInstrumentor", kwargs)
        _global = ASGITelemetry(_INSTRUMENTING_MODULE, "starlette", **options)
        acquire_patch("starlette.call", _install_call)
        acquire_mount_tracking()

    def _uninstrument(self, **kwargs: Any) -> None:
        global _global
        _global = None
        release_patch("starlette.call", _remove_call)
        release_mount_tracking()

    @staticmethod
    def instrument_app(app: ASGIApp, **options: Any) -> ASGIApp:
        """Trace `app` (a Starlette application) with its own options; returns the same object.

        A second call replaces the options; `uninstrument_app(app)` stops tracing it.
        """
        options = telemetry_options("StarletteInstrumentor.instrument_app", options)
        telemetry = ASGITelemetry(_INSTRUMENTING_MODULE, "starlette", **options)
        first = APP_ATTRIBUTE not in vars(app)
        setattr(app, APP_ATTRIBUTE, telemetry)
        if first:
            acquire_patch("starlette.call", _install_call)
            acquire_mount_tracking()
        return app

    @staticmethod
    def uninstrument_app(app: ASGIApp) -> None:
        """Stop tracing an application instrumented with `instrument_app`."""
        if APP_ATTRIBUTE in vars(app):
            delattr(app, APP_ATTRIBUTE)
            release_patch("starlette.call", _remove_call)
            release_mount_tracking()
