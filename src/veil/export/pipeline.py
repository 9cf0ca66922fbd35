"""The pipeline builder: what the providers are given for the exporter names Settings lists, wrapped in one order.

From the provider outwards, a span or a log record passes:

- the accounting processor, which admits it against the ledger's capacity (veil.export.accounting);
- the SDK's batch processor (a simple one, without capacity, for an exporter registered with `batched=False`);
- the counting exporter, which books what was exported, failed or rejected;
- the redacting exporter (veil.redaction.export), absent when redaction is off;
- the exporter the registry (veil._exporters) built, fork-safe when it talks to the network.

A pushed metric exporter gets a periodic reader, counting and redaction; a pull reader (prometheus) applies
redaction itself and has no ledger. Each ledger joins `ledgers` as its pipeline is built: Telemetry.health()
and the loss report read them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.semconv._incubating.attributes.otel_attributes import OtelComponentTypeValues

from veil import _exporters
from veil._exporters import Exporter, PullReader, Signal
from veil.export import accounting
from veil.export.accounting import Ledger
from veil.settings import Settings

__all__ = ["Pipelines", "Redaction"]

_E = TypeVar("_E")
_P = TypeVar("_P")

_BATCHING_SPAN = OtelComponentTypeValues.BATCHING_SPAN_PROCESSOR.value
_BATCHING_LOG = OtelComponentTypeValues.BATCHING_LOG_PROCESSOR.value


@dataclass(frozen=True)
class Redaction:
    """The wrappers that put the redaction engine in front of each kind of exporter (identity when it is off)."""

    spans: Callable[[SpanExporter], SpanExporter]
    metrics: Callable[[MetricExporter], MetricExporter]
    logs: Callable[[LogRecordExporter], LogRecordExporter]

    @classmethod
    def from_settings(cls, settings: Settings) -> Redaction:
        if not settings.redaction_enabled:
            return cls(lambda e: e, lambda e: e, lambda e: e)
        from veil.redaction import Redactor
        from veil.redaction.export import RedactingLogExporter, RedactingMetricExporter, RedactingSpanExporter

        redactor = Redactor.from_settings(settings)
        # With redaction on, the SDK does not cut attribute values (telemetry._span_limits): this wrapper does,
        # after redaction, so that no secret is cut short before a detector sees it.
        max_value_length = settings.span_attribute_value_length_limit
        if max_value_length is None:
            max_value_length = settings.attribute_value_length_limit
        return cls(
            lambda e: RedactingSpanExporter(e, redactor, max_value_length),
            lambda e: RedactingMetricExporter(e, redactor),
            lambda e: RedactingLogExporter(e, redactor),
        )


@dataclass(frozen=True)
class _Pushed(Generic[_E, _P]):
    """What the pipelines of one pushed signal (spans or logs) are made of: its classes and its queue size."""

    signal: Signal
    registry: Mapping[str, Exporter[_E]]
    redact: Callable[[_E], _E]
    count: Callable[[_E, Ledger], _E]
    batch: Callable[[_E], _P]  # the SDK's batch processor, configured from Settings
    simple: Callable[[_E], _P]
    account: Callable[[_P, Ledger], _P]
    processor_type: str
    queue_size: int


class Pipelines:
    """Builds every pipeline of one configuration; the ledgers it opens are appended to `ledgers`."""

    def __init__(self, settings: Settings, ledgers: list[Ledger] | None = None) -> None:
        self.settings = settings
        self.ledgers: list[Ledger] = [] if ledgers is None else ledgers
        self.redaction = Redaction.from_settings(settings)
        self._spans = _Pushed[SpanExporter, SpanProcessor](
            signal="traces",
            registry=_exporters.TRACES,
            redact=self.redaction.spans,
            count=accounting.CountingSpanExporter,
            batch=lambda exporter: BatchSpanProcessor(
                exporter,
                max_queue_size=settings.bsp_max_queue_size,
                schedule_delay_millis=settings.bsp_schedule_delay_millis,
                max_export_batch_size=settings.bsp_max_export_batch_size,
                export_timeout_millis=settings.bsp_export_timeout_millis,
            ),
            simple=SimpleSpanProcessor,
            account=accounting.AccountingSpanProcessor,
            processor_type=_BATCHING_SPAN,
            queue_size=settings.bsp_max_queue_size,
        )
        self._logs = _Pushed[LogRecordExporter, LogRecordProcessor](
            signal="logs",
            registry=_exporters.LOGS,
            redact=self.redaction.logs,
            count=accounting.CountingLogRecordExporter,
            batch=lambda exporter: BatchLogRecordProcessor(
                exporter,
                schedule_delay_millis=settings.blrp_schedule_delay_millis,
                max_export_batch_size=settings.blrp_max_export_batch_size,
                export_timeout_millis=settings.blrp_export_timeout_millis,
                max_queue_size=settings.blrp_max_queue_size,
            ),
            simple=SimpleLogRecordProcessor,
            account=accounting.AccountingLogRecordProcessor,
            processor_type=_BATCHING_LOG,
            queue_size=settings.blrp_max_queue_size,
        )

    def span_processors(self) -> Iterator[SpanProcessor]:
        """One processor per span exporter Settings names, in their order, each built when it is asked for."""
        return self._processors(self._spans)

    def log_processors(self) -> Iterator[LogRecordProcessor]:
        """One processor per log exporter Settings names, in their order, each built when it is asked for."""
        return self._processors(self._logs)

    def metric_readers(self) -> list[MetricReader]:
        """One reader per metric exporter Settings names: the pushed ones in their order, then the pull readers
        (which open their scrape endpoint when built)."""
        readers: list[MetricReader] = []
        pulled: list[PullReader] = []
        for name in self.settings.exporters("metrics"):
            entry = _exporters.METRICS[name]
            if isinstance(entry, PullReader):
                pulled.append(entry)
                continue
            exporter = self.redaction.metrics(entry.build(self.settings))
            readers.append(
                PeriodicExportingMetricReader(
                    accounting.CountingMetricExporter(exporter, self._ledger("metrics", name, None, None)),
                    export_interval_millis=self.settings.metric_export_interval_millis,
                    export_timeout_millis=self.settings.metric_export_timeout_millis,
                )
            )
        readers.extend(entry.build(self.settings, self.redaction.metrics) for entry in pulled)
        return readers

    def _processors(self, pushed: _Pushed[_E, _P]) -> Iterator[_P]:
        for name in self.settings.exporters(pushed.signal):
            entry = pushed.registry[name]
            exporter = pushed.redact(entry.build(self.settings))
            if not entry.batched:
                yield pushed.simple(pushed.count(exporter, self._ledger(pushed.signal, name, None, None)))
                continue
            # The ledger admits at most queue_size items not yet handed to the exporter, so the SDK's queue of the
            # same size never overflows: every item is exported, or counted as lost.
            ledger = self._ledger(pushed.signal, name, pushed.processor_type, pushed.queue_size)
            yield pushed.account(pushed.batch(pushed.count(exporter, ledger)), ledger)

    def _ledger(self, signal: Signal, name: str, processor_type: str | None, capacity: int | None) -> Ledger:
        exporter_type = _exporters.component_type(self.settings, signal, name)
        ledger = Ledger(signal, processor_type, exporter_type, capacity)
        self.ledgers.append(ledger)
        return ledger
