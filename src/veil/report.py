"""The startup report: what veil configured and instrumented in this process, credentials masked.

Below `veil.telemetry`, which calls it at the end of `configure()`: the report reads a `Configured` view (the
`Telemetry` handle is one) and imports nothing from the module that builds it.
"""

from __future__ import annotations

import logging
import sys
from typing import Protocol, TextIO

from opentelemetry.sdk.resources import Resource
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME

from veil import _exporters
from veil._version import __version__
from veil.instrumentation import InstrumentResult
from veil.settings import Settings

__all__ = ["Configured", "log_report", "render"]

_logger = logging.getLogger("veil")


class Configured(Protocol):
    """What the report reads of a configuration: `veil.telemetry.Telemetry` is one."""

    @property
    def settings(self) -> Settings: ...
    @property
    def resource(self) -> Resource | None: ...
    @property
    def instrumented(self) -> InstrumentResult: ...
    @property
    def enabled(self) -> bool: ...


def render(telemetry: Configured) -> str:
    """The report as text, one fact per line."""
    settings = telemetry.settings
    if not telemetry.enabled:
        return f"veil {__version__}: disabled by OTEL_SDK_DISABLED; nothing is recorded or exported"
    resource = telemetry.resource.attributes if telemetry.resource is not None else {}
    lines = [f"veil {__version__}: service {resource.get(SERVICE_NAME)!s}"]
    for signal in _exporters.SIGNALS:
        names = settings.exporters(signal)
        described = [_exporters.describe(settings, signal, name) for name in names]
        lines.append(f"  {signal + ':':9} {', '.join(described) or 'none'}")
    lines.append(f"  {'propagators:':13} {', '.join(settings.propagators)}")
    sampler = settings.traces_sampler
    if "ratio" in sampler:
        sampler = f"{sampler} ({settings.sampler_ratio()})"
    lines.append(f"  {'sampler:':13} {sampler}")
    lines.append(f"  {'redaction:':13} {'on' if settings.redaction_enabled else 'OFF'}")
    instrumented = telemetry.instrumented.instrumented
    listed = ", ".join(f"{name} ({detail})" if detail else name for name, detail in sorted(instrumented.items()))
    lines.append(f"  {'instrumented:':13} {listed or 'nothing'}")
    result = telemetry.instrumented
    if result.pending:
        lines.append(f"  {'pending:':13} {', '.join(sorted(result.pending))} (instrumented on first import)")
    if result.absent:
        lines.append(f"  {'not present:':13} {', '.join(sorted(result.absent))}")
    if result.disabled:
        lines.append(f"  {'disabled:':13} {', '.join(sorted(result.disabled))}")
    for name, why in sorted(result.replaced.items()):
        lines.append(f"  replaced {name}: {why}")
    for name, why in sorted(result.problems().items()):
        lines.append(f"  skipped {name}: {why}")
    return "\n".join(lines)


def log_report(telemetry: Configured, stream: TextIO | None = None) -> None:
    """Write the report to `stream` (stderr) and log each real problem (a conflict, a failure) at WARNING.

    Absent or disabled libraries and upstream instrumentations replaced by veil's own are expected: they appear in
    the report only.
    """
    out = sys.stderr if stream is None else stream
    try:
        out.write(render(telemetry) + "\n")
        out.flush()
    except Exception:
        _logger.debug("veil: could not write the startup report", exc_info=True)
    for name, why in sorted(telemetry.instrumented.problems().items()):
        _logger.warning("veil: instrumentation %s skipped: %s", name, why)
