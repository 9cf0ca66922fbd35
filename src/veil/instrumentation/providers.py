"""The providers `veil.configure()` hands down to instrumentors that are given none.

Instrumentors take their providers as options (`tracer_provider=`, `meter_provider=`, `logger_provider=`) and
otherwise use OpenTelemetry's global ones. The logging instrumentation is stricter: without `logger_provider=`
it exports stdlib records only through the LoggerProvider veil built, and only when that provider has a logs
exporter and is still the global one (a provider installed by someone else after `configure()` is left alone).
`veil.telemetry` records that provider here at each `configure()`, so no instrumentor reaches up to it.
"""

from __future__ import annotations

from opentelemetry._logs import LoggerProvider, get_logger_provider

__all__ = ["log_export_provider", "set_log_export_provider"]

_log_export: list[LoggerProvider | None] = [None]


def set_log_export_provider(provider: LoggerProvider | None) -> None:
    """Record veil's LoggerProvider when it has a logs exporter, or None (no logs exporter, or no configuration)."""
    _log_export[0] = provider


def log_export_provider() -> LoggerProvider | None:
    """The provider recorded by `set_log_export_provider`, while it is the global LoggerProvider; else None."""
    provider = _log_export[0]
    if provider is None or get_logger_provider() is not provider:
        return None
    return provider
