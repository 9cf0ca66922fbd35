"""Export of stdlib records as OTLP logs: ids, attributes, exceptions, thresholds, reconfiguration, recursion."""

from __future__ import annotations

import logging
import logging.config
import threading
from collections.abc import Callable, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import veil
from tests.fixtures.otlp import OTLPReceiver
from veil.instrumentation.stdlib_logging import LoggingInstrumentor

Configure = Callable[..., veil.Telemetry]


def hex_ids(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def otlp(veil_logging: Configure, receiver: OTLPReceiver, **settings: object) -> veil.Telemetry:
    settings.setdefault("traces_exporter", "none")
    return veil_logging(service_name="orders", otlp_endpoint=receiver.http_endpoint, logs_exporter="otlp", **settings)


def test_records_reach_the_receiver_with_ids_attributes_and_redaction(
    veil_logging: Configure, otlp_receiver: OTLPReceiver
) -> None:
    handle = otlp(veil_logging, otlp_receiver)
    logger = logging.getLogger("app.orders")
    logger.setLevel(logging.INFO)
    with trace.get_tracer("tests").start_as_current_span("checkout") as span:
        logger.warning(
            "order %s paid",
            42,
            extra={"order_id": 42, "tags": ["a", "b"], "mixed": [1, "x"], "obj": object, "password": "hunter2"},
        )
    logger.info("outside")
    assert handle.force_flush(5000)
    logs = {log.body: log for log in otlp_receiver.wait_for_logs(2)}
    paid, outside = logs["order 42 paid"], logs["outside"]
    assert (paid.trace_id, paid.span_id) == hex_ids(span)
    assert (paid.severity_text, paid.severity_number) == ("WARN", 13)
    assert paid.scope_name == "app.orders"
    assert paid.resource["service.name"] == "orders"
    attributes = paid.attributes
    assert attributes["order_id"] == 42 and attributes["tags"] == ("a", "b") and attributes["mixed"] == ("1", "x")
    assert attributes["obj"] == "<class 'object'>"
    assert attributes["password"] == "[REDACTED:password]"  # the exporter wrapper redacts every record
    assert attributes["code.function.name"] == "test_records_reach_the_receiver_with_ids_attributes_and_redaction"
    assert attributes["code.file.path"] == __file__ and isinstance(attributes["code.line.number"], int)
    assert not any(key.startswith("otel") or key in ("trace_id", "span_id") for key in attributes)
    assert (outside.trace_id, outside.span_id, outside.severity_text) == ("", "", "INFO")


def test_exceptions_become_exception_attributes(veil_logging: Configure, otlp_receiver: OTLPReceiver) -> None:
    handle = otlp(veil_logging, otlp_receiver)
    try:
        {}["missing"]
    except KeyError:
        logging.getLogger("app").exception("lookup failed")
    assert handle.force_flush(5000)
    (log,) = otlp_receiver.wait_for_logs(1)
    assert log.body == "lookup failed" and log.severity_text == "ERROR"
    assert log.attributes["exception.type"] == "KeyError"
    assert log.attributes["exception.message"] == "'missing'"
    stacktrace = log.attributes["exception.stacktrace"]
    assert isinstance(stacktrace, str) and stacktrace.startswith("Traceback") and "KeyError" in stacktrace


def test_reconfiguring_logging_keeps_exactly_one_export(veil_logging: Configure, otlp_receiver: OTLPReceiver) -> None:
    handle = otlp(veil_logging, otlp_receiver)
    root = logging.getLogger()
    logging.basicConfig(force=True, level=logging.INFO)
    logging.getLogger("app").info("after basicConfig")
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"null": {"class": "logging.NullHandler"}},
            "root": {"level": "INFO", "handlers": ["null"]},
        }
    )
    logging.getLogger("app").info("after dictConfig")
    root.handlers = []
    logging.getLogger("app").info("after clearing handlers")
    quiet = logging.getLogger("app.quiet")
    quiet.propagate = False
    try:
        quiet.info("from a logger that does not propagate")
    finally:
        quiet.propagate = True
    assert veil.instrument("logging").instrumented  # a second instrument() changes nothing
    logging.getLogger("app").info("after instrumenting twice")
    assert handle.force_flush(5000)
    bodies = [log.body for log in otlp_receiver.wait_for_logs(5)]
    assert sorted(bodies) == sorted(
        [
            "after basicConfig",
            "after dictConfig",
            "after clearing handlers",
            "from a logger that does not propagate",
            "after instrumenting twice",
        ]
    )
    assert not any(type(handler).__module__.startswith("veil") for handler in root.handlers)


def test_last_resort_output_of_an_unconfigured_app_is_unchanged(
    veil_logging: Configure, otlp_receiver: OTLPReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    root.handlers[:] = []
    otlp(veil_logging, otlp_receiver)
    logging.getLogger("app.unconfigured").warning("still on stderr")
    assert "still on stderr" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("level", "expected"),
    [("debug", ["d", "i", "w"]), ("info", ["i", "w"]), ("warning", ["w"])],
)
def test_export_level_threshold(
    veil_logging: Configure, otlp_receiver: OTLPReceiver, level: str, expected: list[str]
) -> None:
    handle = otlp(veil_logging, otlp_receiver, logs_export_level=level)
    logger = logging.getLogger("app.levels")
    logger.setLevel(logging.DEBUG)
    for message in ("d", "i", "w"):
        logger.log({"d": logging.DEBUG, "i": logging.INFO, "w": logging.WARNING}[message], message)
    logger.error("end")
    assert handle.force_flush(5000)
    bodies = [log.body for log in otlp_receiver.wait_for_logs(len(expected) + 1)]
    assert sorted(bodies) == sorted([*expected, "end"])


def test_no_export_without_a_logs_exporter(configure_veil: Configure) -> None:
    before = logging.Logger.__dict__["callHandlers"]
    configure_veil(traces_exporter="none", logs_exporter="none", redaction_log_output=False)
    veil.instrument("logging")
    assert logging.Logger.__dict__["callHandlers"] is before  # correlation only: nothing on the logging path


def test_no_export_when_the_global_provider_is_not_veil_s(configure_veil: Configure) -> None:
    from opentelemetry._logs import _internal as logs_internal
    from opentelemetry.util._once import Once

    before = logging.Logger.__dict__["callHandlers"]
    configure_veil(traces_exporter="none", logs_exporter="console", redaction_log_output=False)
    logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()
    logs_internal._LOGGER_PROVIDER = None
    logs_internal.set_logger_provider(LoggerProvider())
    veil.instrument("logging")
    assert logging.Logger.__dict__["callHandlers"] is before


def test_sdk_and_veil_records_are_not_exported(configure_veil: Configure) -> None:
    configure_veil(traces_exporter="none")
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    LoggingInstrumentor().instrument(logger_provider=provider)
    logging.getLogger("opentelemetry.sdk.anything").warning("sdk")
    logging.getLogger("veil.redaction").warning("veil")
    logging.getLogger("veiled").warning("user logger with a similar name")
    assert [record.log_record.body for record in exporter.get_finished_logs()] == ["user logger with a similar name"]


class LoggingExporter(LogRecordExporter):
    """An exporter that logs (through a user-named logger) on every export, and can fail."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.exported: list[ReadableLogRecord] = []
        self.calls = 0

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.calls += 1
        logging.getLogger("app.exporter").warning("exporting %d record(s)", len(batch))
        self.exported.extend(batch)
        if self.fail:
            raise ConnectionError("backend down")
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        pass


@pytest.mark.parametrize("fail", [False, True])
def test_an_exporter_that_logs_or_fails_on_the_caller_thread_does_not_recurse(
    configure_veil: Configure, fail: bool
) -> None:
    configure_veil(traces_exporter="none")
    exporter = LoggingExporter(fail)
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    LoggingInstrumentor().instrument(logger_provider=provider)
    for index in range(3):
        logging.getLogger("app").warning("record %d", index)
    assert exporter.calls == 3  # one export per record: the exporter's own log lines were not exported
    assert [record.log_record.body for record in exporter.exported] == ["record 0", "record 1", "record 2"]


def test_an_exporter_that_logs_on_the_batch_thread_is_not_exported_and_flush_does_not_block(
    configure_veil: Configure,
) -> None:
    configure_veil(traces_exporter="none")
    exporter = LoggingExporter(fail=False)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=10))
    LoggingInstrumentor().instrument(logger_provider=provider)
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            for index in range(200):
                logging.getLogger("app.producer").warning("record %d", index)
                if index % 50 == 0:
                    logging.getLogger().handlers  # noqa: B018
                    provider.force_flush(5000)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=producer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "logging blocked"
    assert provider.force_flush(5000) and not errors
    bodies = [record.log_record.body for record in exporter.exported]
    assert len(bodies) == 600 and not any(str(body).startswith("exporting") for body in bodies)
    provider.shutdown()


def test_warnings_become_span_events_when_enabled(configure_veil: Configure) -> None:
    configure_veil(traces_exporter="none", logs_exporter="none", logs_span_events="warning")
    veil.instrument("logging")
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logger = logging.getLogger("app.events")
    logger.setLevel(logging.INFO)
    with tracer_provider.get_tracer("tests").start_as_current_span("work"):
        logger.info("not an event")
        logger.warning("disk %d%% full", 91)
        try:
            raise OSError("no space")
        except OSError:
            logger.exception("write failed")
    logger.error("outside a span: nowhere to record")
    (span,) = spans.get_finished_spans()
    assert [event.name for event in span.events] == ["log", "log"]
    warning, error = span.events
    assert dict(warning.attributes) == {
        "veil.log.severity": "WARN",
        "veil.log.logger": "app.events",
        "veil.log.message": "disk 91% full",
    }
    assert error.attributes["veil.log.severity"] == "ERROR" and error.attributes["exception.type"] == "OSError"


def test_span_events_are_off_by_default(configure_veil: Configure) -> None:
    before = logging.Logger.__dict__["callHandlers"]
    configure_veil(traces_exporter="none", logs_exporter="none", redaction_log_output=False)
    veil.instrument("logging")
    assert logging.Logger.__dict__["callHandlers"] is before


def test_uninstrument_stops_export(veil_logging: Configure, otlp_receiver: OTLPReceiver) -> None:
    handle = otlp(veil_logging, otlp_receiver)
    logging.getLogger("app").warning("exported")
    LoggingInstrumentor().uninstrument()
    logging.getLogger("app").warning("not exported")
    assert handle.force_flush(5000)
    otlp_receiver.wait_for_logs(1)
    assert [log.body for log in otlp_receiver.logs()] == ["exported"]
