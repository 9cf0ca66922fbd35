"""The pipeline builder: each registered exporter behind accounting, batching, counting and redaction, in order."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from veil import _exporters
from veil._exporters import Exporter, PullReader
from veil.export import accounting
from veil.export.pipeline import Pipelines, Redaction
from veil.settings import Settings

SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"


def _settings(**overrides: object) -> Settings:
    # A long batch delay: a batched pipeline exports only when flushed.
    defaults: dict[str, object] = {"bsp_schedule_delay_millis": 60_000, "blrp_schedule_delay_millis": 60_000}
    return Settings.load(environ={}, **{**defaults, **overrides})


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], InMemorySpanExporter]:
    """Registers an in-memory span exporter as `otlp` (batched or not) for the test."""

    def register(batched: bool) -> InMemorySpanExporter:
        memory = InMemorySpanExporter()
        entry = Exporter(lambda settings: memory, lambda settings, signal, name: "test_span_exporter", batched=batched)
        monkeypatch.setitem(_exporters.TRACES, "otlp", entry)
        return memory

    return register


@pytest.fixture
def tracer_provider() -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    yield provider
    provider.shutdown()


def test_a_batched_span_pipeline_exports_on_flush_and_books_it(
    spans: Callable[[bool], InMemorySpanExporter], tracer_provider: TracerProvider
) -> None:
    memory = spans(True)
    settings = _settings(traces_exporter="otlp", bsp_max_queue_size=64, bsp_max_export_batch_size=8)
    ledgers: list[accounting.Ledger] = []
    for processor in Pipelines(settings, ledgers).span_processors():
        assert isinstance(processor, accounting.AccountingSpanProcessor)
        tracer_provider.add_span_processor(processor)
    tracer_provider.get_tracer("test").start_span("batched").end()
    assert memory.get_finished_spans() == ()  # waiting in the batch
    assert accounting.health_of(ledgers).traces.queued == 1
    assert tracer_provider.force_flush()
    assert [span.name for span in memory.get_finished_spans()] == ["batched"]
    (ledger,) = ledgers
    assert (ledger.signal, ledger.capacity) == ("traces", 64)
    assert ledger.processor_attributes is not None
    assert ledger.processor_attributes["otel.component.type"] == "batching_span_processor"
    assert ledger.exporter_attributes["otel.component.type"] == "test_span_exporter"
    assert accounting.health_of(ledgers).traces == accounting.SignalHealth(exported=1)


def test_an_unbatched_span_pipeline_exports_each_span_as_it_ends(
    spans: Callable[[bool], InMemorySpanExporter], tracer_provider: TracerProvider
) -> None:
    memory = spans(False)
    pipelines = Pipelines(_settings(traces_exporter="otlp"))
    for processor in pipelines.span_processors():
        tracer_provider.add_span_processor(processor)
    tracer_provider.get_tracer("test").start_span("at once").end()
    assert [span.name for span in memory.get_finished_spans()] == ["at once"]
    (ledger,) = pipelines.ledgers
    assert (ledger.capacity, ledger.processor_attributes) == (None, None)
    assert accounting.health_of(pipelines.ledgers).traces.exported == 1


@pytest.mark.parametrize("redaction_enabled", [True, False])
def test_redaction_sits_in_front_of_the_exporter_when_it_is_on(
    spans: Callable[[bool], InMemorySpanExporter], tracer_provider: TracerProvider, redaction_enabled: bool
) -> None:
    memory = spans(False)
    settings = _settings(traces_exporter="otlp", redaction_enabled=redaction_enabled)
    for processor in Pipelines(settings).span_processors():
        tracer_provider.add_span_processor(processor)
    tracer_provider.get_tracer("test").start_span("login", attributes={"note": f"key {SECRET}"}).end()
    (span,) = memory.get_finished_spans()
    assert span.attributes is not None
    assert (SECRET in str(span.attributes["note"])) is not redaction_enabled


def test_the_span_value_length_limit_applies_after_redaction() -> None:
    settings = _settings(attribute_value_length_limit=100, span_attribute_value_length_limit=12)
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(Redaction.from_settings(settings).spans(memory)))
    provider.get_tracer("test").start_span("cut", attributes={"note": "x" * 50}).end()
    provider.shutdown()
    (span,) = memory.get_finished_spans()
    assert span.attributes is not None
    assert len(str(span.attributes["note"])) == 12


@pytest.mark.parametrize("batched", [True, False])
def test_log_pipelines_are_built_the_same_way(monkeypatch: pytest.MonkeyPatch, batched: bool) -> None:
    memory = InMemoryLogRecordExporter()
    monkeypatch.setitem(_exporters.LOGS, "console", Exporter(lambda settings: memory, batched=batched))
    settings = _settings(logs_exporter="console", blrp_max_queue_size=32, blrp_max_export_batch_size=8)
    pipelines = Pipelines(settings)
    provider = LoggerProvider(shutdown_on_exit=False)
    for processor in pipelines.log_processors():
        assert isinstance(processor, accounting.AccountingLogRecordProcessor) is batched
        provider.add_log_record_processor(processor)
    provider.get_logger("test").emit(LogRecord(body=f"token {SECRET}"))
    assert provider.force_flush()
    records: Sequence[ReadableLogRecord] = memory.get_finished_logs()
    assert len(records) == 1
    assert SECRET not in str(records[0].log_record.body)
    (ledger,) = pipelines.ledgers
    assert (ledger.signal, ledger.capacity) == ("logs", 32 if batched else None)
    assert ledger.exporter_attributes["otel.component.type"] == "veil_console_logs_exporter"
    assert accounting.health_of(pipelines.ledgers).logs.exported == 1
    provider.shutdown()


class _Collected(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        return None


def test_pushed_metric_readers_come_first_and_a_pull_reader_gets_redaction_but_no_ledger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pushed = _Collected()
    given: list[Callable[[MetricExporter], MetricExporter]] = []
    pull = InMemoryMetricReader()

    def build_pull(settings: Settings, redact: Callable[[MetricExporter], MetricExporter]) -> MetricReader:
        given.append(redact)
        return pull

    monkeypatch.setitem(_exporters.METRICS, "prometheus", PullReader(build_pull))
    monkeypatch.setitem(_exporters.METRICS, "console", Exporter(lambda settings: pushed))
    pipelines = Pipelines(_settings(metrics_exporter="prometheus,console", metric_export_interval_millis=60_000))
    readers = pipelines.metric_readers()
    assert isinstance(readers[0], PeriodicExportingMetricReader)
    assert readers[1] is pull
    assert given == [pipelines.redaction.metrics]
    (ledger,) = pipelines.ledgers
    assert (ledger.signal, ledger.capacity, ledger.processor_attributes) == ("metrics", None, None)
    provider = MeterProvider(metric_readers=readers, shutdown_on_exit=False)
    provider.get_meter("test").create_counter("requests").add(1, {"note": f"key {SECRET}"})
    assert provider.force_flush()
    points = [
        dict(point.attributes or {})
        for resource_metrics in pushed.batches[-1].resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        for point in metric.data.data_points
    ]
    assert points
    assert all(SECRET not in str(attributes) for attributes in points)
    assert accounting.health_of(pipelines.ledgers).metrics.exported >= 1
    provider.shutdown()


def test_ledgers_join_the_given_list_in_build_order(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[SpanExporter] = []

    def build(settings: Settings) -> SpanExporter:
        built.append(InMemorySpanExporter())
        return built[-1]

    monkeypatch.setitem(_exporters.TRACES, "otlp", Exporter(build))
    monkeypatch.setitem(_exporters.TRACES, "console", Exporter(build, batched=False))
    monkeypatch.setitem(_exporters.LOGS, "console", Exporter(lambda settings: InMemoryLogRecordExporter()))
    ledgers: list[accounting.Ledger] = [accounting.Ledger("logs", None, "earlier", None)]
    pipelines = Pipelines(_settings(traces_exporter="otlp,console", logs_exporter="console"), ledgers)
    processors = [*pipelines.span_processors(), *pipelines.log_processors()]
    assert pipelines.ledgers is ledgers
    assert [(ledger.signal, ledger.capacity is None) for ledger in ledgers] == [
        ("logs", True),
        ("traces", False),
        ("traces", True),
        ("logs", False),
    ]
    assert len(built) == 2
    for processor in processors:
        processor.shutdown()
