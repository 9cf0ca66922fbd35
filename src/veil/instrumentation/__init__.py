"""veil's instrumentations, one module per library, and the registry that finds and loads them.

The registry is the `opentelemetry_instrumentor` entry-point group, filtered to veil's own entries: the names
are the upstream contrib names (`flask`, `django`, `httpx`, ...), so OTEL_PYTHON_DISABLED_INSTRUMENTATIONS
means the same thing with veil as without it.
"""

from __future__ import annotations

import logging as _stdlib_logging  # `logging` here would be the veil.instrumentation.logging submodule
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version

from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from packaging.requirements import Requirement

from veil.errors import ConfigurationError

_logger = _stdlib_logging.getLogger("veil.instrumentation")

GROUP = "opentelemetry_instrumentor"


@dataclass
class InstrumentResult:
    """What `veil.instrument()` did: instrumented names with the library version, skipped names with why.

    `absent` names the skipped ones whose library is simply not installed (expected, never a warning);
    `replaced` (launcher only) the upstream instrumentors skipped because veil instruments the same library.
    """

    instrumented: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    disabled: set[str] = field(default_factory=set)
    replaced: dict[str, str] = field(default_factory=dict)

    def merge(self, other: InstrumentResult) -> None:
        self.instrumented.update(other.instrumented)
        self.skipped.update(other.skipped)
        self.absent.update(other.absent)
        self.disabled.update(other.disabled)
        self.replaced.update(other.replaced)

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
    except Exception as error:
        result.skipped[name] = f"import failed: {error!r}"
        _logger.warning("veil: skipped instrumentation %s: import failed", name, exc_info=True)
        return
    usable, installed, detail = check_dependencies(instrumentor)
    if not usable:
        _record_unusable(result, name, installed, detail)
        _logger.log(
            _stdlib_logging.WARNING if installed else _stdlib_logging.DEBUG,
            "veil: skipped instrumentation %s: %s",
            name,
            detail,
        )
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
        load(registry[name], result, **kwargs)
    return result


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
    """Undo `instrument()` for the named libraries (all when none is named); returns what was undone."""
    undone = []
    for name, entry_point in available().items():
        if names and name not in names:
            continue
        try:
            instrumentor: BaseInstrumentor = entry_point.load()()
        except Exception:
            continue
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
            undone.append(name)
    return undone
