"""The one seam to OpenTelemetry's private names: every use of one in veil is here, and only here.

Each function or constant below says which private SDK/API behaviour it relies on, and
tests/core/test_sdk_seam.py checks each of them against the installed SDK, so that a release that renames or
changes one fails there, loudly and by name, instead of somewhere deep in a pipeline. The dependency range in
pyproject.toml is the range those tests were run against (`nox -s sdk` runs the suite at both ends).

Underscored names that are allowed everywhere, because they are the only home of a documented API:

- `opentelemetry.semconv._incubating`: the semantic-conventions package's documented home of incubating
  (not yet stable) attribute and metric names.
- `opentelemetry._logs` and `opentelemetry.sdk._logs` (with their public submodules, such as
  `opentelemetry.sdk._logs.export`): the logs API and SDK, underscored while the logs signal is experimental.
- `opentelemetry.exporter.otlp.proto.grpc._log_exporter` and `...proto.http._log_exporter`: the OTLP log
  exporters, underscored for the same reason.
- the hooks of OpenTelemetry's extension base classes, abstract or doing nothing until overridden
  (`BaseInstrumentor._instrument`/`_uninstrument`, `BaseDistro._configure`, `MetricReader._receive_metrics`):
  overriding them is the documented way to write an instrumentor, a distro or a metric reader. Calling the
  base class's own implementation is not (see `prometheus_receiver`).

Everything else underscored in `opentelemetry.*` goes through this module.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as _context
from opentelemetry import trace as _trace
from opentelemetry.sdk.metrics import Meter as _SDKMeter
from opentelemetry.sdk.metrics._internal.exemplar import Exemplar as _Exemplar
from opentelemetry.sdk.metrics._internal.instrument import _Histogram
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter, MetricReader
from opentelemetry.sdk.metrics.view import Aggregation, ExplicitBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace.span import TraceState

if TYPE_CHECKING:
    from opentelemetry._logs import LoggerProvider
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

# ------------------------------------------------------------------------------------------ context keys

SPAN_KEY: Final[str] = next(iter(_trace.set_span_in_context(_trace.INVALID_SPAN, _context.Context())))
"""The context key the trace API keeps the current span under (`opentelemetry.trace.propagation._SPAN_KEY`).

Relies on: `trace.set_span_in_context(span, Context())` returning a context with exactly one key, the span's,
and `trace.get_current_span(context)` reading it. Learnt from the public API, so no private import is needed;
reading `context.get(SPAN_KEY)` is what `get_current_span` does, without its call overhead on the hot path.
"""

SUPPRESS_INSTRUMENTATION_KEY: Final[str] = _context._SUPPRESS_INSTRUMENTATION_KEY
"""The context key `opentelemetry.instrumentation.utils.suppress_instrumentation()` sets to True.

Relies on: `opentelemetry.context._SUPPRESS_INSTRUMENTATION_KEY` being that key (the instrumentation package
and the SDK exporters set and read it; there is no public constant, only context managers).
"""

SUPPRESS_HTTP_INSTRUMENTATION_KEY: Final[str] = _context._SUPPRESS_HTTP_INSTRUMENTATION_KEY
"""The context key `opentelemetry.instrumentation.utils.suppress_http_instrumentation()` sets to True.

Relies on: `opentelemetry.context._SUPPRESS_HTTP_INSTRUMENTATION_KEY` being that key.
"""


def current_context_reader() -> Callable[[], Mapping[str, object]]:
    """The fastest way to read the current OpenTelemetry Context: its ContextVar's `get` when the runtime uses one,
    `opentelemetry.context.get_current` otherwise (another runtime context, or an SDK that changed this).

    Relies on: `opentelemetry.context._RUNTIME_CONTEXT` being a `ContextVarsRuntimeContext` whose
    `_current_context` ContextVar holds the current Context (what `get_current()` returns).
    """
    runtime = getattr(_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if isinstance(variable, contextvars.ContextVar):
        return variable.get
    return _context.get_current


# ------------------------------------------------------------------------------------ global providers


def install_global_providers(
    tracer_provider: TracerProvider, meter_provider: MeterProvider, logger_provider: LoggerProvider
) -> None:
    """Make the three providers the API's global ones, also when earlier ones were set.

    The API lets each global provider be set once (a second `set_*_provider` only warns). veil owns those
    slots, so it resets each set-once guard and the stored provider before setting its own.

    Relies on: `opentelemetry.trace._TRACER_PROVIDER_SET_ONCE` / `_TRACER_PROVIDER`,
    `opentelemetry.metrics._internal._METER_PROVIDER_SET_ONCE` / `_METER_PROVIDER` and
    `opentelemetry._logs._internal._LOGGER_PROVIDER_SET_ONCE` / `_LOGGER_PROVIDER` being the guard (an
    `opentelemetry.util._once.Once`) and the provider that `set_*_provider` / `get_*_provider` use.
    """
    from opentelemetry import metrics as metrics_api
    from opentelemetry._logs import _internal as logs_internal
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.util._once import Once

    _trace._TRACER_PROVIDER_SET_ONCE = Once()
    _trace._TRACER_PROVIDER = None
    _trace.set_tracer_provider(tracer_provider)
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_api.set_meter_provider(meter_provider)
    logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()
    logs_internal._LOGGER_PROVIDER = None
    logs_internal.set_logger_provider(logger_provider)


def resource_updater(provider: object) -> Callable[[Resource], None] | None:
    """The provider's method that replaces its resource (in every tracer/meter/logger it made), or None.

    Relies on: `TracerProvider._update_resource(resource)`, `MeterProvider._update_resource(resource)` and
    `LoggerProvider._update_resource(resource)`, which the SDK itself calls in a forked child.
    """
    update = getattr(provider, "_update_resource", None)
    return update if callable(update) else None


def resource_attribute_storage(resource: Resource) -> dict[str, Any] | None:
    """The dict behind a Resource's (immutable) attributes, to update `process.pid` in place after a fork; None
    when the SDK stores them differently.

    Relies on: `Resource._attributes` being a `BoundedAttributes` whose `_dict` is the plain dict that
    `resource.attributes` reads.
    """
    storage = getattr(getattr(resource, "_attributes", None), "_dict", None)
    return storage if isinstance(storage, dict) else None


# ------------------------------------------------------------------------------------------- trace state


def set_trace_state_members(state: TraceState, members: dict[str, str]) -> None:
    """Give a freshly made (empty) TraceState the already validated `members`, in order, without the API's
    own (Level 1) validation.

    Relies on: `TraceState._dict` being the dict every `TraceState` method (Mapping access, `to_header`,
    `add`/`update`/`delete` of the base class) reads.
    """
    state._dict = members


# ------------------------------------------------------------------------------------------------ metrics

Exemplar = _Exemplar
"""The SDK's exemplar record, `Exemplar(filtered_attributes, value, time_unix_nano, span_id, trace_id)`.

Relies on: `opentelemetry.sdk.metrics._internal.exemplar.Exemplar` (what `HistogramDataPoint.exemplars` holds and
the OTLP and Prometheus exporters read) taking those five fields in that order; no public module exports it.
"""


def preferred_temporality(exporter: object) -> dict[type, AggregationTemporality] | None:
    """The `preferred_temporality` a MetricExporter was built with (None for an exporter without one).

    Relies on: `MetricExporter.__init__` keeping its argument as `_preferred_temporality`, which
    `PeriodicExportingMetricReader` reads.
    """
    return getattr(exporter, "_preferred_temporality", None)


def preferred_aggregation(exporter: object) -> dict[type, Aggregation] | None:
    """The `preferred_aggregation` a MetricExporter was built with (None for an exporter without one).

    Relies on: `MetricExporter.__init__` keeping its argument as `_preferred_aggregation`.
    """
    return getattr(exporter, "_preferred_aggregation", None)


class DelegatingMetricExporter(MetricExporter):
    """A MetricExporter in front of `inner`: built with `inner`'s temporality and aggregation preferences (read
    through the two functions above), flushing and shutting down `inner`. Subclasses implement `export`."""

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=preferred_temporality(inner),
            preferred_aggregation=preferred_aggregation(inner),
        )
        self.inner = inner

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def meter_scope(meter: _SDKMeter) -> InstrumentationScope:
    """The instrumentation scope the SDK reports a meter's metrics under.

    Relies on: `Meter._instrumentation_scope`.
    """
    return meter._instrumentation_scope


def meter_enabled(meter: _SDKMeter) -> bool:
    """Whether the meter's metrics are collected (a meter configurator may disable it).

    Relies on: `Meter._is_enabled()`, which the SDK's own instruments check before recording.
    """
    return bool(meter._is_enabled())


def measurement_consumer(meter: _SDKMeter) -> Any:
    """The object a MeterProvider collects through, shared by all its meters and living exactly as long as the
    provider (veil keeps its histogram state on it).

    Relies on: `Meter._measurement_consumer` (a `SynchronousMeasurementConsumer`) being shared per provider and
    accepting new attributes.
    """
    return meter._measurement_consumer


def consumer_config(consumer: Any) -> Any:
    """The provider's configuration as the consumer holds it: `.resource`, `.exemplar_filter`, `.views`.

    Relies on: `SynchronousMeasurementConsumer._sdk_config` (an `SdkConfiguration`) with those attributes.
    """
    return consumer._sdk_config


def consumer_readers(consumer: Any) -> list[MetricReader]:
    """The metric readers of the consumer's provider.

    Relies on: `SynchronousMeasurementConsumer._reader_storages` being a mapping keyed by the provider's readers.
    """
    return list(consumer._reader_storages)


def reader_collect(reader: MetricReader) -> Callable[..., Any] | None:
    """The callback a reader's `collect()` calls (`callback(reader, timeout_millis=...)` -> MetricsData), set
    when the reader is registered with a MeterProvider; None before that and after the provider shut down.

    Relies on: `MetricReader._collect`, set by `MetricReader._set_collect_callback`.
    """
    collect: Callable[..., Any] | None = getattr(reader, "_collect", None)
    return collect


def set_reader_collect(reader: MetricReader, callback: Callable[..., Any]) -> None:
    """Replace the callback `reader.collect()` calls (see `reader_collect`).

    Relies on: `MetricReader._set_collect_callback(callback)` storing what `collect()` calls.
    """
    reader._set_collect_callback(callback)


def histogram_temporality(reader: MetricReader) -> AggregationTemporality:
    """The temporality `reader` collects histograms with.

    Relies on: `MetricReader._instrument_class_temporality`, a dict keyed by the SDK's instrument classes
    (`opentelemetry.sdk.metrics._internal.instrument._Histogram` for histograms).
    """
    temporality: AggregationTemporality = reader._instrument_class_temporality.get(
        _Histogram, AggregationTemporality.CUMULATIVE
    )
    return temporality


def histogram_aggregation(reader: MetricReader) -> Aggregation | None:
    """The aggregation `reader` asks for histograms.

    Relies on: `MetricReader._instrument_class_aggregation`, keyed like `_instrument_class_temporality`.
    """
    aggregation: Aggregation | None = reader._instrument_class_aggregation.get(_Histogram)
    return aggregation


def bucket_aggregation_is_default(aggregation: ExplicitBucketHistogramAggregation) -> bool:
    """Whether an `ExplicitBucketHistogramAggregation` has no boundaries of its own (so instruments' advisory
    boundaries apply) and records min and max, as the default histogram aggregation does.

    Relies on: `ExplicitBucketHistogramAggregation._boundaries` (None when not given) and `._record_min_max`.
    """
    return aggregation._boundaries is None and bool(aggregation._record_min_max)


def prometheus_collector(reader: object) -> Any:
    """The prometheus_client collector a `PrometheusMetricReader` registered (what a scrape calls).

    Relies on: `PrometheusMetricReader._collector`, the `_CustomCollector` registered in its registry.
    """
    return reader._collector  # type: ignore[attr-defined]


def prometheus_receiver(reader: object) -> Callable[..., None]:
    """The upstream `PrometheusMetricReader._receive_metrics` bound to `reader` (a subclass that overrides it):
    hands collected MetricsData to the collector for translation.

    Relies on: `PrometheusMetricReader._receive_metrics(metrics_data, timeout_millis=...)` doing that.
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    receive: Callable[..., None] = PrometheusMetricReader._receive_metrics.__get__(reader)
    return receive


def forget_prometheus_target_info(collector: object) -> None:
    """Make a Prometheus collector build its `target_info` series anew from the next collection (no-op for an
    object without that cache).

    Relies on: `_CustomCollector._target_info`, the series cached on the first scrape, rebuilt when None.
    """
    if hasattr(collector, "_target_info"):
        collector._target_info = None


# ------------------------------------------------------------------------------------------ OTLP exporters

SDK_INTERNAL_EXPORT_LOGGERS: Final = (
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.metrics._internal.export",
)
"""Loggers of the SDK's private modules that log every export retry and queue-full drop.

Relies on: the batch processors (`opentelemetry.sdk._shared_internal.BatchProcessor`) and the periodic metric
reader (`opentelemetry.sdk.metrics._internal.export`) logging through `logging.getLogger(__name__)`.
"""


def exporter_shutdown_events(exporter: object) -> list[threading.Event]:
    """The events an OTLP exporter's backoff waits on, which the SDK sets when the exporter shuts down.

    Relies on: `_OTLPHTTPClient._shutdown_event` held as `exporter._client` over HTTP, and the gRPC exporter's
    `_shutdown_in_progress`. Another SDK version may have neither: the list is then empty.
    """
    holders = ((getattr(exporter, "_client", None), "_shutdown_event"), (exporter, "_shutdown_in_progress"))
    return [event for holder, name in holders if isinstance(event := getattr(holder, name, None), threading.Event)]


def grpc_stub(exporter: object) -> Any:
    """The generated stub a gRPC OTLP exporter calls `Export` on (None before it connected).

    Relies on: `OTLPExporterMixin._client`.
    """
    return getattr(exporter, "_client", None)


def grpc_exporter_wrapping_stub(
    base: type[Any], before_connect: Callable[[Any], None], wrap: Callable[[Any], Any]
) -> type[Any]:
    """A subclass of the SDK's gRPC exporter `base` whose stub is `wrap(stub)`, also after every reconnect;
    `before_connect(exporter)` runs before each (re)connection. `base` itself when the SDK has no such hook.

    Relies on: `OTLPExporterMixin._initialize_channel_and_stub()`, which creates the channel and sets the stub as
    `_client`, called in `__init__` and again after the first UNAVAILABLE of an export, before backing off.
    """
    connect = getattr(base, "_initialize_channel_and_stub", None)
    if not callable(connect):
        return base

    def initialize(self: Any) -> None:
        before_connect(self)
        connect(self)
        self._client = wrap(self._client)

    return type(f"Reading{base.__name__}", (base,), {"_initialize_channel_and_stub": initialize})
