"""The exporter registry: for each signal, every exporter name and how to build, name and describe it.

`OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER` and `OTEL_LOGS_EXPORTER` accept the names registered here (and
`none`): Settings reads `EXPORTER_NAMES`, the pipeline builder (veil.export.pipeline) builds from `TRACES`,
`METRICS` and `LOGS`, the startup report describes with `describe`, so an exporter is added in one place. This
module imports nothing heavy (each factory imports its exporter when called), which lets Settings read the names
without loading the SDK. `Signal` is the one type naming the three signals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from veil._parsers import mask_url

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
    from opentelemetry.sdk.trace.export import SpanExporter

    from veil.settings import Settings

__all__ = [
    "EXPORTER_NAMES",
    "LOGS",
    "METRICS",
    "SIGNALS",
    "TRACES",
    "Exporter",
    "PullReader",
    "Signal",
    "component_type",
    "describe",
]

Signal = Literal["traces", "metrics", "logs"]
SIGNALS: tuple[Signal, ...] = ("traces", "metrics", "logs")

_E = TypeVar("_E")


def _by_name(settings: Settings, signal: Signal, name: str) -> str:
    return name


def _veil_component_type(settings: Settings, signal: Signal, name: str) -> str:
    return f"veil_{name}_{signal}_exporter"


@dataclass(frozen=True)
class Exporter(Generic[_E]):
    """A pushed exporter of one signal: `build` makes it, the pipeline wraps it (veil.export.pipeline).

    `component_type` is the `otel.component.type` of veil's own metrics about it, `describe` its line in the
    startup report (credentials masked); `batched` False hands each item to it as it ends (development output).
    """

    build: Callable[[Settings], _E]
    component_type: Callable[[Settings, Signal, str], str] = _veil_component_type
    describe: Callable[[Settings, Signal, str], str] = _by_name
    batched: bool = True


@dataclass(frozen=True)
class PullReader:
    """A metrics exporter that is a reader of its own, collected when scraped: no queue, so no ledger.

    `build` is given the redaction wrapper, which it applies to the data each collection gathers.
    """

    build: Callable[[Settings, Callable[[MetricExporter], MetricExporter]], MetricReader]
    describe: Callable[[Settings, Signal, str], str] = _by_name


# ---------------------------------------------------------------------------------------------- OTLP


def _otlp_component_type(settings: Settings, signal: Signal, name: str) -> str:
    from veil.export import otlp_protocol
    from veil.export.otlp import exporter_type

    return exporter_type(signal, otlp_protocol(settings, signal))


def _describe_otlp(settings: Settings, signal: Signal, name: str) -> str:
    from veil.export import otlp_endpoint, otlp_protocol

    headers = sorted(settings.otlp_signal_headers(signal))
    header_note = f", headers: {', '.join(f'{key}=****' for key in headers)}" if headers else ""
    return f"{name} ({otlp_protocol(settings, signal)}) -> {mask_url(otlp_endpoint(settings, signal))}{header_note}"


def _otlp_spans(settings: Settings) -> SpanExporter:
    from veil.export import otlp_span_exporter

    return otlp_span_exporter(settings)


def _otlp_metrics(settings: Settings) -> MetricExporter:
    from veil.export import otlp_metric_exporter

    return otlp_metric_exporter(settings)


def _otlp_logs(settings: Settings) -> LogRecordExporter:
    from veil.export import otlp_log_exporter

    return otlp_log_exporter(settings)


# Jaeger ingests OTLP natively: `jaeger` is OTLP with Jaeger's default ports, which are the OTLP ones.
_OTLP_SPANS = Exporter(_otlp_spans, _otlp_component_type, _describe_otlp)
_OTLP_METRICS = Exporter(_otlp_metrics, _otlp_component_type, _describe_otlp)
_OTLP_LOGS = Exporter(_otlp_logs, _otlp_component_type, _describe_otlp)


# -------------------------------------------------------------------------------------- the others


def _zipkin(settings: Settings) -> SpanExporter:
    from veil.export import zipkin_span_exporter

    return zipkin_span_exporter(settings)


def _zipkin_component_type(settings: Settings, signal: Signal, name: str) -> str:
    from opentelemetry.semconv._incubating.attributes.otel_attributes import OtelComponentTypeValues

    return OtelComponentTypeValues.ZIPKIN_HTTP_SPAN_EXPORTER.value


def _describe_zipkin(settings: Settings, signal: Signal, name: str) -> str:
    return f"zipkin (v2 JSON) -> {mask_url(settings.zipkin_endpoint)}"


def _console_spans(settings: Settings) -> SpanExporter:
    from veil.export.console import ConsoleSpanExporter

    return ConsoleSpanExporter()


def _console_metrics(settings: Settings) -> MetricExporter:
    from veil.export.console import ConsoleMetricExporter

    return ConsoleMetricExporter()


def _console_logs(settings: Settings) -> LogRecordExporter:
    from veil.export.console import ConsoleLogExporter

    return ConsoleLogExporter()


def _prometheus(settings: Settings, redact: Callable[[MetricExporter], MetricExporter]) -> MetricReader:
    from veil.export.prometheus import prometheus_reader

    return prometheus_reader(settings, redact)


def _describe_prometheus(settings: Settings, signal: Signal, name: str) -> str:
    first = settings.prometheus_port
    last = first + settings.prometheus_worker_ports - 1
    ports = str(first) if last == first else f"{first}-{last}"
    return f"prometheus (scrape endpoint) <- http://{settings.prometheus_host}:{ports}/metrics"


# ---------------------------------------------------------------------------------------------- registry

# In documentation order (the configuration reference and the error messages list them so).
TRACES: dict[str, Exporter[SpanExporter]] = {
    "otlp": _OTLP_SPANS,
    "jaeger": _OTLP_SPANS,
    "zipkin": Exporter(_zipkin, _zipkin_component_type, _describe_zipkin),
    # Development output is printed as each trace completes, not a batch interval later.
    "console": Exporter(_console_spans, batched=False),
}
METRICS: dict[str, Exporter[MetricExporter] | PullReader] = {
    "otlp": _OTLP_METRICS,
    "jaeger": _OTLP_METRICS,
    "prometheus": PullReader(_prometheus, _describe_prometheus),
    "console": Exporter(_console_metrics),
}
LOGS: dict[str, Exporter[LogRecordExporter]] = {
    "otlp": _OTLP_LOGS,
    "jaeger": _OTLP_LOGS,
    "console": Exporter(_console_logs),
}

_REGISTRIES: dict[Signal, Mapping[str, Exporter[Any] | PullReader]] = {
    "traces": TRACES,
    "metrics": METRICS,
    "logs": LOGS,
}

#: The names each signal's exporter variable accepts: the registry's, and `none`.
EXPORTER_NAMES: dict[Signal, tuple[str, ...]] = {
    signal: (*registry, "none") for signal, registry in _REGISTRIES.items()
}


def describe(settings: Settings, signal: Signal, name: str) -> str:
    """One line naming an exporter and where it sends, credentials masked (for the startup report)."""
    return _REGISTRIES[signal][name].describe(settings, signal, name)


def component_type(settings: Settings, signal: Signal, name: str) -> str:
    """The `otel.component.type` of the pushed exporter `name` builds for `signal` (for veil's own metrics)."""
    entry = _REGISTRIES[signal][name]
    assert isinstance(entry, Exporter), f"{name} is not a pushed exporter"
    return entry.component_type(settings, signal, name)
