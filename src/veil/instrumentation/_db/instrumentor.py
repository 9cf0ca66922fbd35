"""The base of veil's database instrumentors: options checked by name, one `DBTelemetry` per instrument()."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from veil.instrumentation._db.telemetry import OPTION_NAMES, DBTelemetry
from veil.instrumentation._http.config import checked_options


class DBInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """`instrument(**options)` builds the telemetry once and calls `_patch`; `uninstrument()` calls `_unpatch`.

    Subclasses set `_library` (the entry-point name, as in VEIL_DB_RAW_STATEMENTS), `_module` (the tracer
    name) and `_dependencies`, and either list what to wrap in `_patches()` or override `_patch` / `_unpatch`;
    they import their library only there, so that veil imports nothing from a library that is not installed.
    `telemetry` is None while not instrumented: objects made traced earlier (connections, cursors) then call
    straight through.
    """

    _library: ClassVar[str]
    _module: ClassVar[str]
    _dependencies: ClassVar[Collection[str]] = ()
    _extra_options: ClassVar[tuple[str, ...]] = ()
    telemetry: ClassVar[DBTelemetry | None] = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return self._dependencies

    def _instrument(self, **kwargs: Any) -> None:
        options = checked_options(f"{type(self).__name__}.instrument", kwargs, (*OPTION_NAMES, *self._extra_options))
        telemetry = DBTelemetry(self._library, self._module, options)
        self._patch(telemetry, options)
        type(self).telemetry = telemetry

    def _uninstrument(self, **kwargs: Any) -> None:
        type(self).telemetry = None
        self._unpatch()

    def _patches(self) -> list[tuple[Any, str, Any]]:
        """(owner, attribute, wrapt wrapper) for each function `_patch` wraps and `_unpatch` restores."""
        raise NotImplementedError

    def _patch(self, telemetry: DBTelemetry, options: dict[str, Any]) -> None:
        for owner, attribute, wrapper in self._patches():
            wrapt.wrap_function_wrapper(owner, attribute, wrapper)

    def _unpatch(self) -> None:
        for owner, attribute, _ in self._patches():
            unwrap(owner, attribute)
