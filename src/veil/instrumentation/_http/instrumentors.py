"""What the HTTP instrumentors share: the base of the client instrumentors (a table of patched methods) and
the base of the WSGI/ASGI ones (no global entry point: `instrument_app` wraps one application).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import partial
from typing import Any, TypeVar

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from veil.instrumentation._http.client import ClientTelemetry, client_telemetry

ClientHandler = Callable[[ClientTelemetry, Any, Any, tuple[Any, ...], dict[str, Any]], Any]
"""`handler(telemetry, wrapped, instance, args, kwargs)`: a wrapt wrapper with the telemetry bound first."""

_Middleware = TypeVar("_Middleware")


class ClientInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """`instrument(**options)` builds the telemetry once and wraps every `_patches` entry; `uninstrument()`
    unwraps them.

    Subclasses set `_library` (the name in OTEL_PYTHON_<LIBRARY>_EXCLUDED_URLS), `_module` (the instrumenting
    module), `_dependencies` (version ranges) and `_patches`: (owner, attribute, handler, asynchronous)
    entries, `asynchronous` telling whether the async hooks apply.
    """

    _library: str
    _module: str
    _dependencies: Collection[str] = ()
    _patches: tuple[tuple[Any, str, ClientHandler, bool], ...] = ()

    def instrumentation_dependencies(self) -> Collection[str]:
        return self._dependencies

    def _instrument(self, **kwargs: Any) -> None:
        for owner, attribute, handler, asynchronous in self._patches:
            telemetry = client_telemetry(self._library, self._module, kwargs, asynchronous=asynchronous)
            wrapt.wrap_function_wrapper(owner, attribute, partial(handler, telemetry))

    def _uninstrument(self, **kwargs: Any) -> None:
        for owner, attribute, _, _ in self._patches:
            unwrap(owner, attribute)


class MiddlewareInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """For protocols with no global entry point to patch (WSGI, ASGI).

    `instrument(**options)` records default options that `instrument_app` uses when it is not given its own.
    """

    _defaults: dict[str, Any] = {}

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        type(self)._defaults = dict(kwargs)

    def _uninstrument(self, **kwargs: Any) -> None:
        type(self)._defaults = {}

    @classmethod
    def _wrap(cls, middleware: Callable[..., _Middleware], app: Any, options: dict[str, Any]) -> _Middleware:
        """`middleware(app, **options)` with `options` over the instrument() defaults."""
        return middleware(app, **{**cls._defaults, **options})
