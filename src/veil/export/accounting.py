"""Accounting for every span, log record and metric point on its way out of the process.

Each batching pipeline (one processor in front of one exporter) gets a `Ledger`. The ledger is the queue's
admission control and its book: a span is either admitted (it will reach the exporter) or dropped because
the queue is full, and every export ends as exported, failed (after the exporter's own retries) or rejected
(the backend accepted the request but refused some items in an OTLP partial success). Nothing is lost
without being counted, and the counts are:

* returned by `veil.Telemetry.health()` (`Health`, one `SignalHealth` per signal) for tests and readiness
  probes;
* published as veil's own metrics under the semantic-convention names `otel.sdk.processor.*.processed`,
  `otel.sdk.processor.*.queue.size|capacity` and `otel.sdk.exporter.*.exported` (meter `veil`);
* summarised by `LossReporter` in one warning line, at most once a minute, when something was lost.

The request path only calls `Ledger.admit()`: a short critical section around integer counters, no I/O,
no logging, no user code. The ledger sits in front of the SDK's batch processor and admits at most
`capacity` items that have not yet been handed to the exporter, so the SDK queue (of the same capacity)
never overflows and never drops on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TypeVar

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.semconv._incubating.attributes.otel_attributes import (
    OTEL_COMPONENT_NAME,
    OTEL_COMPONENT_TYPE,
)
from opentelemetry.semconv._incubating.metrics.otel_metrics import (
    OTEL_SDK_EXPORTER_LOG_EXPORTED,
    OTEL_SDK_EXPORTER_METRIC_DATA_POINT_EXPORTED,
    OTEL_SDK_EXPORTER_SPAN_EXPORTED,
    OTEL_SDK_PROCESSOR_LOG_PROCESSED,
    OTEL_SDK_PROCESSOR_LOG_QUEUE_CAPACITY,
    OTEL_SDK_PROCESSOR_LOG_QUEUE_SIZE,
    OTEL_SDK_PROCESSOR_SPAN_PROCESSED,
    OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY,
    OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from veil import _sdk
from veil._exporters import Signal
from veil._fork import after_fork
from veil._guard import log_once

_R = TypeVar("_R")

_logger = logging.getLogger("veil")

QUEUE_FULL = "queue_full"
ALREADY_SHUTDOWN = "already_shutdown"
REJECTED = "rejected"
EXPORT_FAILED = "export_failed"
REPORT_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class SignalHealth:
    """What happened to the items of one signal in this process (counts since start, or since fork)."""

    exported: int = 0  # accepted by the backend
    dropped: int = 0  # never reached an exporter: the queue was full (or the pipeline already shut down)
    failed: int = 0  # the export failed after the exporter's retries
    rejected: int = 0  # refused by the backend in an OTLP partial success
    queued: int = 0  # waiting in a queue or being exported right now

    @property
    def lost(self) -> int:
        """Items that will never arrive: dropped + failed + rejected."""
        return self.dropped + self.failed + self.rejected

    def __add__(self, other: SignalHealth) -> SignalHealth:
        return SignalHealth(*(getattr(self, item.name) + getattr(other, item.name) for item in fields(self)))


@dataclass(frozen=True)
class Health:
    """`veil.Telemetry.health()`: per-signal counts of exported, dropped, failed, rejected and queued items."""

    traces: SignalHealth = SignalHealth()
    logs: SignalHealth = SignalHealth()
    metrics: SignalHealth = SignalHealth()

    @property
    def lost(self) -> int:
        return self.traces.lost + self.logs.lost + self.metrics.lost

    @property
    def ok(self) -> bool:
        """True while nothing was lost (a readiness probe may use it; a slow backend alone is not a loss)."""
        return self.lost == 0

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {name: asdict(getattr(self, name)) for name in ("traces", "logs", "metrics")}


# ----------------------------------------------------------------------------------------------- ledger

_rejection = threading.local()


def record_rejected(count: int, message: str = "") -> None:
    """Called by a partial-success reader while an export runs on this thread: `count` items were refused."""
    box: list[object] | None = getattr(_rejection, "box", None)
    if box is not None and count > 0:
        box[0] = int(box[0]) + count  # type: ignore[call-overload]
        box[1] = message


def record_failure_cause(cause: str) -> None:
    """Called by a transport reader while an export runs on this thread: why the last attempt failed."""
    box: list[object] | None = getattr(_rejection, "box", None)
    if box is not None:
        box[2] = cause


_component_counts: dict[str, int] = {}
_component_lock = threading.Lock()


def _component_name(component_type: str) -> str:
    with _component_lock:
        index = _component_counts.get(component_type, 0)
        _component_counts[component_type] = index + 1
    return f"veil/{component_type}/{index}"


class Ledger:
    """The book of one pipeline; `capacity` None means it has no queue (nothing is admitted or dropped)."""

    def __init__(
        self,
        signal: Signal,
        processor_type: str | None,
        exporter_type: str,
        capacity: int | None,
    ) -> None:
        self.signal: Signal = signal
        self.capacity = capacity
        self.processor_attributes = (
            {OTEL_COMPONENT_TYPE: processor_type, OTEL_COMPONENT_NAME: _component_name(processor_type)}
            if processor_type is not None
            else None
        )
        self.exporter_attributes = {
            OTEL_COMPONENT_TYPE: exporter_type,
            OTEL_COMPONENT_NAME: _component_name(exporter_type),
        }
        self.reporter: LossReporter | None = None
        self.closed = False
        self._reset()
        after_fork(self._reset)

    def _reset(self) -> None:
        # A forked child starts with an empty queue (the SDK clears it) and its own book; a lock held by a
        # parent thread at fork time must not be inherited.
        self._lock = threading.Lock()
        self._pending = 0  # admitted, not yet handed to the exporter
        self._in_flight = 0
        self.processed = 0
        self.exported = 0
        self.dropped = 0
        self.dropped_after_shutdown = 0
        self.failed: dict[str, int] = {}
        self.rejected = 0
        self.last_rejection_message = ""

    # -- request path ------------------------------------------------------------------------------------

    def admit(self) -> bool:
        """Reserve a queue slot for one item; False (and counted as dropped) when the queue is full."""
        with self._lock:
            if self.closed:
                self.dropped_after_shutdown += 1
                return False
            if self.capacity is not None and self._pending >= self.capacity:
                self.dropped += 1
                return False
            self._pending += 1
            return True

    # -- export path -------------------------------------------------------------------------------------

    def export(self, count: int, call: Callable[[], _R], succeeded: Callable[[_R], bool]) -> _R | None:
        """Run one export of `count` items through `call` and book its outcome; exceptions are contained."""
        with self._lock:
            if self.capacity is not None:
                self._pending = max(self._pending - count, 0)
            self.processed += count
            self._in_flight += count
        box: list[object] = [0, "", ""]
        _rejection.box = box
        result: _R | None = None
        success = False
        try:
            result = call()
            success = succeeded(result)
        except Exception as error:
            box[2] = type(error).__qualname__
            log_once(
                f"export.{self.signal}.raised",
                "veil: a %s exporter raised (the batch was counted as failed)",
                self.signal,
                exc_info=True,
            )
        finally:
            _rejection.box = None
        rejected = min(int(box[0]), count)  # type: ignore[call-overload]
        with self._lock:
            self._in_flight = max(self._in_flight - count, 0)
            if success:
                self.exported += count - rejected
                self.rejected += rejected
                if rejected:
                    self.last_rejection_message = str(box[1])
            else:
                cause = str(box[2]) or EXPORT_FAILED
                self.failed[cause] = self.failed.get(cause, 0) + count
        reporter = self.reporter
        if reporter is not None:
            reporter.check()
        return result

    def health(self) -> SignalHealth:
        with self._lock:
            return SignalHealth(
                exported=self.exported,
                dropped=self.dropped + self.dropped_after_shutdown,
                failed=sum(self.failed.values()),
                rejected=self.rejected,
                queued=self._pending + self._in_flight,
            )

    # -- metrics -----------------------------------------------------------------------------------------

    def processed_observations(self) -> list[Observation]:
        if self.processor_attributes is None:
            return []
        with self._lock:
            values = (
                (self.processed, None),
                (self.dropped, QUEUE_FULL),
                (self.dropped_after_shutdown, ALREADY_SHUTDOWN),
            )
        return [
            Observation(
                value, self.processor_attributes if cause is None else {**self.processor_attributes, ERROR_TYPE: cause}
            )
            for value, cause in values
            if cause is None or value
        ]

    def exported_observations(self) -> list[Observation]:
        with self._lock:
            failed = dict(self.failed)
            exported, rejected = self.exported, self.rejected
        observations = [Observation(exported, self.exporter_attributes)]
        if rejected:
            observations.append(Observation(rejected, {**self.exporter_attributes, ERROR_TYPE: REJECTED}))
        for cause, value in failed.items():
            observations.append(Observation(value, {**self.exporter_attributes, ERROR_TYPE: cause}))
        return observations

    def queue_size(self) -> list[Observation]:
        if self.processor_attributes is None:
            return []
        with self._lock:
            return [Observation(self._pending, self.processor_attributes)]

    def queue_capacity(self) -> list[Observation]:
        if self.processor_attributes is None or self.capacity is None:
            return []
        return [Observation(self.capacity, self.processor_attributes)]


def health_of(ledgers: Iterable[Ledger]) -> Health:
    totals: dict[str, SignalHealth] = {"traces": SignalHealth(), "logs": SignalHealth(), "metrics": SignalHealth()}
    for ledger in ledgers:
        totals[ledger.signal] = totals[ledger.signal] + ledger.health()
    return Health(**totals)


# ------------------------------------------------------------------------------------------- reporting


class LossReporter:
    """Logs one warning line when items were lost since the last line, at most once per `interval`."""

    def __init__(self, ledgers: Sequence[Ledger], interval: float = REPORT_INTERVAL_SECONDS) -> None:
        self._ledgers = ledgers
        self._interval = interval
        self._lock = threading.Lock()
        self._reported_lost = 0
        self._last = float("-inf")
        for ledger in ledgers:
            ledger.reporter = self

    def check(self, *, force: bool = False) -> bool:
        """Log the summary if something new was lost and the interval passed (or `force`); True if logged."""
        health = health_of(self._ledgers)
        now = time.monotonic()
        with self._lock:
            if health.lost <= self._reported_lost or (not force and now - self._last < self._interval):
                return False
            self._reported_lost = health.lost
            self._last = now
        _logger.warning("veil: telemetry was lost: %s (totals since start; see Telemetry.health())", describe(health))
        return True


def describe(health: Health) -> str:
    """`traces: 120 dropped (queue full), 512 failed; logs: 3 rejected by the backend`-style summary."""
    parts = []
    for name, unit in (("traces", "spans"), ("logs", "log records"), ("metrics", "metric points")):
        signal: SignalHealth = getattr(health, name)
        if not signal.lost and not signal.queued:
            continue
        items = []
        if signal.dropped:
            items.append(f"{signal.dropped} dropped (queue full)")
        if signal.failed:
            items.append(f"{signal.failed} failed after retries")
        if signal.rejected:
            items.append(f"{signal.rejected} rejected by the backend")
        if signal.queued:
            items.append(f"{signal.queued} still queued")
        parts.append(f"{unit}: {', '.join(items)}; {signal.exported} exported")
    return "; ".join(parts) or "nothing"


# -------------------------------------------------------------------------------------------- metrics


def register_metrics(meter_provider: MeterProvider, ledgers: Sequence[Ledger]) -> None:
    """Publish the ledgers as veil's own `otel.sdk.*` metrics (observed at collection, nothing per request)."""
    from veil import __version__

    meter = meter_provider.get_meter("veil", __version__)
    units = {"traces": "{span}", "logs": "{log_record}", "metrics": "{data_point}"}

    def observe(
        signal: Signal, read: Callable[[Ledger], list[Observation]]
    ) -> Callable[[CallbackOptions], list[Observation]]:
        def callback(_options: CallbackOptions) -> list[Observation]:
            return [observation for ledger in ledgers if ledger.signal == signal for observation in read(ledger)]

        return callback

    exported = {
        "traces": OTEL_SDK_EXPORTER_SPAN_EXPORTED,
        "logs": OTEL_SDK_EXPORTER_LOG_EXPORTED,
        "metrics": OTEL_SDK_EXPORTER_METRIC_DATA_POINT_EXPORTED,
    }
    signals: tuple[Signal, ...] = ("traces", "logs", "metrics")
    for signal in signals:
        if not any(ledger.signal == signal for ledger in ledgers):
            continue
        meter.create_observable_counter(
            exported[signal],
            callbacks=[observe(signal, Ledger.exported_observations)],
            unit=units[signal],
            description="Items whose export finished, successfully or not (error.type set on failure).",
        )
    queued: tuple[tuple[Signal, str, str, str], ...] = (
        (
            "traces",
            OTEL_SDK_PROCESSOR_SPAN_PROCESSED,
            OTEL_SDK_PROCESSOR_SPAN_QUEUE_SIZE,
            OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY,
        ),
        (
            "logs",
            OTEL_SDK_PROCESSOR_LOG_PROCESSED,
            OTEL_SDK_PROCESSOR_LOG_QUEUE_SIZE,
            OTEL_SDK_PROCESSOR_LOG_QUEUE_CAPACITY,
        ),
    )
    for signal, processed, size, capacity in queued:
        if not any(ledger.signal == signal and ledger.processor_attributes for ledger in ledgers):
            continue
        meter.create_observable_counter(
            processed,
            callbacks=[observe(signal, Ledger.processed_observations)],
            unit=units[signal],
            description="Items handed to the exporter, or dropped (error.type queue_full / already_shutdown).",
        )
        meter.create_observable_up_down_counter(
            size,
            callbacks=[observe(signal, Ledger.queue_size)],
            unit=units[signal],
            description="Items waiting in the processor's queue.",
        )
        meter.create_observable_up_down_counter(
            capacity,
            callbacks=[observe(signal, Ledger.queue_capacity)],
            unit=units[signal],
            description="Capacity of the processor's queue.",
        )


# ----------------------------------------------------------------------------------- processors


class AccountingSpanProcessor(SpanProcessor):
    """Admission control in front of a batching span processor: a full queue drops (and counts) the span."""

    def __init__(self, inner: SpanProcessor, ledger: Ledger) -> None:
        self._inner = inner
        self._ledger = ledger

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return  # the batch processor ignores unsampled spans too
        if self._ledger.admit():
            self._inner.on_end(span)

    def shutdown(self) -> None:
        self._ledger.closed = True
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class AccountingLogRecordProcessor(LogRecordProcessor):
    """Admission control in front of a batching log record processor."""

    def __init__(self, inner: LogRecordProcessor, ledger: Ledger) -> None:
        self._inner = inner
        self._ledger = ledger

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self._ledger.admit():
            self._inner.on_emit(log_record)

    def shutdown(self) -> None:
        self._ledger.closed = True
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


# ------------------------------------------------------------------------------------ exporters


class CountingSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, ledger: Ledger) -> None:
        self._inner = inner
        self._ledger = ledger

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._ledger.export(
            len(spans), lambda: self._inner.export(spans), lambda r: r is SpanExportResult.SUCCESS
        )
        return SpanExportResult.FAILURE if result is None else result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingLogRecordExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, ledger: Ledger) -> None:
        self._inner = inner
        self._ledger = ledger

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = self._ledger.export(
            len(batch), lambda: self._inner.export(batch), lambda r: r is LogRecordExportResult.SUCCESS
        )
        return LogRecordExportResult.FAILURE if result is None else result

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]  # untyped in the SDK

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


def count_points(metrics_data: MetricsData) -> int:
    """Data points in one metric export."""
    total = 0
    for resource_metrics in metrics_data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                total += len(getattr(metric.data, "data_points", ()))
    return total


class CountingMetricExporter(_sdk.DelegatingMetricExporter):
    def __init__(self, inner: MetricExporter, ledger: Ledger) -> None:
        super().__init__(inner)
        self._ledger = ledger

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        result = self._ledger.export(
            count_points(metrics_data),
            lambda: self.inner.export(metrics_data, timeout_millis=timeout_millis),
            lambda r: r is MetricExportResult.SUCCESS,
        )
        return MetricExportResult.FAILURE if result is None else result
