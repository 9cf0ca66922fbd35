"""The base of veil's database instrumentors: options checked by name, one `DBTelemetry` per instrument()."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from veil.instrumentation._db.telemetry import OPTION_NAMES, DBTelemetry
from veil.instrumentation._http.config import checked_options


class DBInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """`instrument(**options)` builds the telemetry once and calls `_patch`; `uninstrument()` calls `_unpatch`.

    Subclasses set `_library` (the entry-point name, as in VEIL_DB_RAW_STATEMENTS), `_module` (the tracer
    name) and `_dependencies`, and import their library only inside `_patch` / `_unpatch`, so that veil
    imports nothing from a library that is not installed. `telemetry` is None while not instrumented: objects
    made traced earlier (connections, cursors) then call straight through.
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

    def _patch(self, telemetry: DBTelemetry, options: dict[str, Any]) -> None:
        raise NotImplementedError

    def _unpatch(self) -> None:
        raise NotImplementedError
