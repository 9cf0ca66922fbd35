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

import importlib
import threading
from collections.abc import Callable, Collection
from typing import Any, Final

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from veil._guard import log_once
from veil.instrumentation._http import SERVER_OPTION_NAMES, checked_options
from veil.instrumentation.asgi import STATE_KEY, ASGIApp, ASGITelemetry, set_mount_tracking, trace_asgi_call

__all__ = ["StarletteInstrumentor"]

_INSTRUMENTING_MODULE: Final = "veil.instrumentation.starlette"
APP_ATTRIBUTE: Final = "_veil_asgi_telemetry"
"""Attribute of an application instrumented with `instrument_app` (its own telemetry and options)."""

_instruments = ("starlette >= 0.27, < 2",)

_lock = threading.Lock()
_patch_users: dict[str, int] = {}
_is_fastapi: dict[type, bool] = {}


OPTION_NAMES: Final = (*SERVER_OPTION_NAMES, "first_byte_event")
"""The options every Starlette-family instrumentation accepts (those of `VeilASGIMiddleware`)."""


# ---------------------------------------------------------------------------------------------- patches


def acquire_patch(name: str, install: Callable[[], None]) -> None:
    """Install patch `name` with `install()` unless already installed; count the users."""
    with _lock:
        count = _patch_users.get(name, 0)
        if count == 0:
            install()
        _patch_users[name] = count + 1


def release_patch(name: str, remove: Callable[[], None]) -> None:
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


class AppCall:
    """The wrapper of one framework's `<Application>.__call__`: traces a request with the application's own
    telemetry (`instrument_app`), else with the instrumentor's (`instrument()`), unless `skip(type(app))`.
    """

    __slots__ = ("skip", "telemetry")

    def __init__(self, skip: Callable[[type], bool] | None = None) -> None:
        self.telemetry: ASGITelemetry | None = None
        self.skip = skip

    def __call__(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        telemetry = app_telemetry(instance)
        if telemetry is None:
            telemetry = self.telemetry
            if telemetry is None or (self.skip is not None and self.skip(type(instance))):
                return wrapped(*args, **kwargs)
        if kwargs or len(args) != 3:
            return wrapped(*args, **kwargs)
        scope, receive, send = args
        return trace_asgi_call(telemetry, wrapped, scope, receive, send)


# ---------------------------------------------------------------------------------------- instrumentor


class ASGIFrameworkInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces every application of a Starlette-family framework (`instrument()`) or one (`instrument_app(app)`).

    Subclasses set `_library` (also the OTEL_PYTHON_<LIBRARY>_EXCLUDED_URLS name), `_module`, `_dependencies`,
    `_target` (module, class) whose `__call__` is wrapped, and `_call` (its `AppCall`). Mounted prefixes are
    tracked while any of them is in use.
    """

    _library: str
    _module: str
    _dependencies: Collection[str]
    _target: tuple[str, str]
    _call: AppCall

    def instrumentation_dependencies(self) -> Collection[str]:
        return self._dependencies

    def _instrument(self, **kwargs: Any) -> None:
        options = checked_options(type(self).__name__, kwargs, OPTION_NAMES)
        self._call.telemetry = ASGITelemetry(self._module, self._library, options)
        self._acquire()

    def _uninstrument(self, **kwargs: Any) -> None:
        self._call.telemetry = None
        self._release()

    @classmethod
    def instrument_app(cls, app: ASGIApp, **options: Any) -> ASGIApp:
        """Trace `app` with its own options; returns the same object.

        A second call replaces the options; `uninstrument_app(app)` stops tracing it.
        """
        options = checked_options(f"{cls.__name__}.instrument_app", options, OPTION_NAMES)
        telemetry = ASGITelemetry(cls._module, cls._library, options)
        first = APP_ATTRIBUTE not in vars(app)
        setattr(app, APP_ATTRIBUTE, telemetry)
        if first:
            cls._acquire()
        return app

    @classmethod
    def uninstrument_app(cls, app: ASGIApp) -> None:
        """Stop tracing an application instrumented with `instrument_app`."""
        if APP_ATTRIBUTE in vars(app):
            delattr(app, APP_ATTRIBUTE)
            cls._release()

    @classmethod
    def _acquire(cls) -> None:
        acquire_patch(f"{cls._library}.call", cls._install_call)
        acquire_patch("mount", _install_mount)

    @classmethod
    def _release(cls) -> None:
        release_patch(f"{cls._library}.call", cls._remove_call)
        release_patch("mount", _remove_mount)

    @classmethod
    def _install_call(cls) -> None:
        module, name = cls._target
        wrapt.wrap_function_wrapper(module, f"{name}.__call__", cls._call)

    @classmethod
    def _remove_call(cls) -> None:
        module, name = cls._target
        unwrap(getattr(importlib.import_module(module), name), "__call__")


class StarletteInstrumentor(ASGIFrameworkInstrumentor):
    """Traces every Starlette application (`instrument()`) or one (`instrument_app(app)`).

    Options (both ways): `excluded_urls` (default OTEL_PYTHON_STARLETTE_EXCLUDED_URLS, else
    OTEL_PYTHON_EXCLUDED_URLS), `request_hook(span, RequestInfo)`, `response_hook(span, RequestInfo,
    ResponseInfo)`, `capture_request_headers` / `capture_response_headers`, `sanitize_fields`,
    `first_byte_event`, `tracer_provider`, `meter_provider`.
    """

    _library = "starlette"
    _module = _INSTRUMENTING_MODULE
    _dependencies = _instruments
    _target = ("starlette.applications", "Starlette")
    _call = AppCall(skip=_fastapi_class)  # FastAPI applications are left to the fastapi instrumentation
