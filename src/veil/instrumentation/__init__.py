"""veil's instrumentations, one module per library, and the registry that finds and loads them.

The registry is the `opentelemetry_instrumentor` entry-point group, filtered to veil's own entries: the names
are the upstream contrib names (`flask`, `django`, `httpx`, ...), so OTEL_PYTHON_DISABLED_INSTRUMENTATIONS
means the same thing with veil as without it.

Instrumenting is lazy: a library the program has not imported yet is instrumented by a post-import hook when
the program first imports it (`TRIGGERS` names the module to watch), so start-up imports no framework and its
cost does not grow with what is installed. A library already imported is instrumented at once; one that is not
installed is found out without importing anything (`importlib.util.find_spec`).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version
from types import ModuleType
from typing import Final

import wrapt
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from packaging.requirements import Requirement

from veil.errors import ConfigurationError

_logger = logging.getLogger("veil.instrumentation")

GROUP = "opentelemetry_instrumentor"

# The module whose first import instruments each library. An entry point not listed here (`logging`, which is
# always imported already) is instrumented at once.
TRIGGERS: Final[dict[str, str]] = {
    "aiohttp-client": "aiohttp",
    "django": "django",
    "fastapi": "fastapi",
    "flask": "flask",
    "httpx": "httpx",
    "requests": "requests",
    "starlette": "starlette",
    "urllib": "urllib.request",
    "urllib3": "urllib3",
}


@dataclass
class InstrumentResult:
    """What `veil.instrument()` did: instrumented names with the library version, skipped names with why.

    `absent` names the skipped ones whose library is simply not installed (expected, never a warning);
    `replaced` (launcher only) the upstream instrumentors skipped because veil instruments the same library;
    `pending` the installed libraries not imported yet, by the module whose first import instruments them (the
    hook then moves each to `instrumented`, or to `skipped` with the reason).
    """

    instrumented: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    disabled: set[str] = field(default_factory=set)
    replaced: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)

    def merge(self, other: InstrumentResult) -> None:
        self.instrumented.update(other.instrumented)
        self.skipped.update(other.skipped)
        self.absent.update(other.absent)
        self.disabled.update(other.disabled)
        self.replaced.update(other.replaced)
        self.pending.update(other.pending)

    def problems(self) -> dict[str, str]:
        """Skips worth a warning: version conflicts and failures, not absent or disabled libraries."""
        expected = self.absent | self.disabled
        return {name: why for name, why in self.skipped.items() if name not in expected}

    def skip_disabled(self, name: str) -> None:
        self.skipped[name] = "disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
        self.disabled.add(name)


def is_veil_entry_point(entry_point: EntryPoint) -> bool:
    return entry_point.value.startswith("veil.")


def available() -> dict[str, EntryPoint]:
    """veil's instrumentations by entry-point name."""
    return {ep.name: ep for ep in entry_points(group=GROUP) if is_veil_entry_point(ep)}


def _library_version(requirements: Iterable[str]) -> str:
    versions = []
    for requirement in requirements:
        name = Requirement(requirement).name
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(versions)


def check_dependencies(instrumentor: BaseInstrumentor) -> tuple[bool, bool, str]:
    """(usable, installed, detail): the library version, or why not, worded for a log line."""
    requirements = list(instrumentor.instrumentation_dependencies())
    conflict = get_dependency_conflicts(requirements)
    if conflict is None:
        return True, True, _library_version(requirements)
    if conflict.found:
        return False, True, f"{conflict.found} is installed but veil supports {conflict.required}"
    return False, False, f"{Requirement(str(conflict.required)).name} is not installed"


def _record_unusable(result: InstrumentResult, name: str, installed: bool, detail: str) -> None:
    result.skipped[name] = detail
    if not installed:
        result.absent.add(name)


def _is_own_module(missing: str, module: str) -> bool:
    """Whether the missing module is the instrumentation's own (or veil's), rather than a library it needs."""
    return missing == "veil" or missing.startswith("veil.") or module == missing or module.startswith(missing + ".")


def load(
    entry_point: EntryPoint,
    result: InstrumentResult,
    **kwargs: object,
) -> None:
    """Load and instrument one entry point, recording the outcome in `result`; never raises."""
    name = entry_point.name
    try:
        instrumentor_class = entry_point.load()
        instrumentor: BaseInstrumentor = instrumentor_class()
    except ModuleNotFoundError as error:
        if error.name is None or _is_own_module(error.name, entry_point.module):
            result.skipped[name] = f"import failed: {error!r}"
            _logger.warning("veil: skipped instrumentation %s: import failed", name, exc_info=True)
            return
        # A library the instrumentation needs is not installed: expected without the extra, not a failure.
        _record_unusable(result, name, False, f"{error.name} is not installed")
        _logger.debug("veil: skipped instrumentation %s: %s is not installed", name, error.name)
        return
    except Exception as error:
        result.skipped[name] = f"import failed: {error!r}"
        _logger.warning("veil: skipped instrumentation %s: import failed", name, exc_info=True)
        return
    usable, installed, detail = check_dependencies(instrumentor)
    if not usable:
        _record_unusable(result, name, installed, detail)
        report = _logger.warning if installed else _logger.debug
        report("veil: skipped instrumentation %s: %s", name, detail)
        return
    if instrumentor.is_instrumented_by_opentelemetry:
        result.instrumented[name] = detail
        return
    try:
        instrumentor.instrument(skip_dep_check=True, **kwargs)
    except Exception as error:
        result.skipped[name] = f"failed: {error!r}"
        _logger.warning("veil: instrumentation %s failed and was skipped", name, exc_info=True)
        return
    result.instrumented[name] = detail


def instrument(
    *names: str,
    disabled: Iterable[str] = (),
    **kwargs: object,
) -> InstrumentResult:
    """Instrument the named libraries, or every supported library that is installed when none is named.

    `disabled` (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS; `*` means all) applies only when no name is given:
    naming a library is an explicit request. Keyword arguments (tracer_provider=, meter_provider=, ...) go to
    every instrumentor. Unknown names raise ConfigurationError; nothing else raises.
    """
    registry = available()
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise ConfigurationError("veil.instrument()", unknown[0], sorted(registry), reason="unknown name")
    result = InstrumentResult()
    is_disabled = _disabled_test(() if names else disabled)
    for name in names or sorted(registry):
        if is_disabled(name):
            result.skip_disabled(name)
            continue
        load_when_imported(registry[name], result, **kwargs)
    return result


# name -> (entry point, the result to record in, instrument() keyword arguments), until the trigger is imported
_pending: dict[str, tuple[EntryPoint, InstrumentResult, dict[str, object]]] = {}
_hooked: set[str] = set()  # names with a post-import hook registered and not fired yet
_pending_lock = threading.Lock()


def _installed(module_name: str) -> bool:
    """Whether `module_name` can be imported, found without importing it (its parent package excepted)."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def load_when_imported(entry_point: EntryPoint, result: InstrumentResult, **kwargs: object) -> None:
    """`load()` now if the library is imported already (or has no trigger); if it is installed but not imported,
    when the program first imports it; if it is not installed, record it as absent. Never raises."""
    name = entry_point.name
    trigger = TRIGGERS.get(name)
    if trigger is None or trigger in sys.modules:
        load(entry_point, result, **kwargs)
        return
    if not _installed(trigger):
        _record_unusable(result, name, False, f"{trigger.split('.')[0]} is not installed")
        _logger.debug("veil: skipped instrumentation %s: %s is not installed", name, trigger)
        return
    with _pending_lock:
        replaced = _pending.get(name)
        if replaced is not None:  # a later instrument() call: its result and options win
            replaced[1].pending.pop(name, None)
        _pending[name] = (entry_point, result, kwargs)
        result.pending[name] = trigger
        register = name not in _hooked
        _hooked.add(name)
    if register:
        wrapt.register_post_import_hook(_hook_for(name), trigger)


def _hook_for(name: str) -> Callable[[ModuleType], None]:
    def instrument_on_import(module: ModuleType) -> None:
        with _pending_lock:
            _hooked.discard(name)
            waiting = _pending.pop(name, None)
        if waiting is None:  # uninstrumented (or instrumented at once) since the hook was registered
            return
        entry_point, result, kwargs = waiting
        result.pending.pop(name, None)
        try:
            _bind_to_parent(module)
            load(entry_point, result, **kwargs)
        except Exception:  # an exception here would fail the application's import
            _logger.warning("veil: instrumentation %s failed on import and was skipped", name, exc_info=True)

    return instrument_on_import


def _bind_to_parent(module: ModuleType) -> None:
    """Make a just-imported submodule an attribute of its package, as the import system is about to.

    The post-import hook runs before importlib binds `urllib.request` to `urllib`; an instrumentor that does
    `from urllib import request` would fail there ("cannot access submodule ... (circular import)").
    """
    parent, _, child = module.__name__.rpartition(".")
    package = sys.modules.get(parent) if parent else None
    if package is not None and child not in vars(package):
        setattr(package, child, module)


def _disabled_test(disabled: Iterable[str]) -> Callable[[str], bool]:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS as a predicate (`*` disables everything)."""
    names = {name.strip() for name in disabled}
    return lambda name: "*" in names or name in names


def plan(disabled: Iterable[str] = ()) -> InstrumentResult:
    """What `instrument()` would do, without instrumenting anything (for `veil config`)."""
    result = InstrumentResult()
    is_disabled = _disabled_test(disabled)
    for name, entry_point in sorted(available().items()):
        if is_disabled(name):
            result.skip_disabled(name)
            continue
        trigger = TRIGGERS.get(name)
        if trigger is not None and not _installed(trigger):
            _record_unusable(result, name, False, f"{trigger.split('.')[0]} is not installed")
            continue
        try:
            usable, installed, detail = check_dependencies(entry_point.load()())
        except Exception as error:
            result.skipped[name] = f"import failed: {error!r}"
            continue
        if usable:
            result.instrumented[name] = detail
        else:
            _record_unusable(result, name, installed, detail)
    return result


def uninstrument(*names: str) -> list[str]:
    """Undo `instrument()` for the named libraries (all when none is named); returns what was undone.

    A library still waiting for its first import stops waiting: importing it later instruments nothing."""
    undone = []
    for name, entry_point in available().items():
        if names and name not in names:
            continue
        with _pending_lock:
            waiting = _pending.pop(name, None)
        if waiting is not None:
            waiting[1].pending.pop(name, None)
        trigger = TRIGGERS.get(name)
        if trigger is not None and trigger not in sys.modules:
            continue  # never imported, so never instrumented; loading the instrumentor would import it
        try:
            instrumentor: BaseInstrumentor = entry_point.load()()
        except Exception:
            continue
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
            undone.append(name)
    return undone
