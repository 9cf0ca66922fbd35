"""The console exporters, fed by real SDK providers and writing to in-memory (or pseudo-terminal) streams."""

from __future__ import annotations

import io
import os
import re
import select
import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import SpanKind, Status, StatusCode, format_span_id, format_trace_id

from veil.errors import ConfigurationError
from veil.export import console
from veil.export.console import ConsoleLogExporter, ConsoleMetricExporter, ConsoleSpanExporter

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def _no_color_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)


def _provider(service: str = "checkout") -> tuple[TracerProvider, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _three_level_trace() -> tuple[list[ReadableSpan], int]:
    """Real SDK spans of one trace: root (server) > child (client, ERROR, exception) > grandchild."""
    provider, memory = _provider()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "GET /orders/{id}",
        kind=SpanKind.SERVER,
        attributes={HTTP_REQUEST_METHOD: "GET", HTTP_ROUTE: "/orders/{id}", HTTP_RESPONSE_STATUS_CODE: 500},
    ) as root:
        with tracer.start_as_current_span(
            "POST",
            kind=SpanKind.CLIENT,
            attributes={URL_FULL: "http://payments/charge?token=[REDACTED:token]"},
        ) as child:
            with tracer.start_as_current_span("serialize"):
                pass
            try:
                raise TimeoutError("read timed out")
            except TimeoutError as error:
                child.record_exception(error)
                child.set_status(Status(StatusCode.ERROR, "payments timed out"))
                child.set_attribute(ERROR_TYPE, "TimeoutError")
        root.add_event("order.loaded", {"order.size": 3})
    provider.shutdown()
    spans = list(memory.get_finished_spans())
    assert [span.name for span in spans] == ["serialize", "POST", "GET /orders/{id}"]
    return spans, root.get_span_context().trace_id


def _plain(text: str) -> str:
    return ANSI.sub("", text)


def test_tree_printed_once_the_root_arrives_across_two_export_calls() -> None:
    spans, trace_id = _three_level_trace()
    stream = io.StringIO()
    exporter = ConsoleSpanExporter(stream)

    assert exporter.export(spans[:2]) is SpanExportResult.SUCCESS  # grandchild and child: no root yet
    assert stream.getvalue() == ""
    assert exporter.export(spans[2:]) is SpanExportResult.SUCCESS
    exporter.shutdown()

    lines = stream.getvalue().splitlines()
    header = lines[0]
    assert header.startswith(f"trace {format_trace_id(trace_id)}")
    assert "checkout" in header
    assert "3 spans" in header
    assert re.search(r"\d+\.\d\d ms", header)
    span_lines = [line for line in lines[1:] if "•" not in line]
    indents = {
        name: next(line.index(name) for line in span_lines if f" {name}  " in line)
        for name in ("GET /orders/{id}", "POST", "serialize")
    }
    assert indents["GET /orders/{id}"] < indents["POST"] < indents["serialize"]
    assert indents["POST"] - indents["GET /orders/{id}"] == indents["serialize"] - indents["POST"]
    assert [line.strip().split("  ")[0][3:] for line in span_lines] == [
        "GET /orders/{id}",
        "POST",
        "serialize",
    ]
    assert "server" in span_lines[0]
    assert "client" in span_lines[1]
    assert "http.route=/orders/{id}" in span_lines[0]
    assert "http.response.status_code=500" in span_lines[0]
    # The service is named in the header, not repeated on spans of the same service.
    assert "[checkout]" not in stream.getvalue()


def test_error_status_and_events_are_shown() -> None:
    spans, _ = _three_level_trace()
    stream = io.StringIO()
    exporter = ConsoleSpanExporter(stream)
    exporter.export(spans)

    output = stream.getvalue()
    post_line = next(line for line in output.splitlines() if " POST  " in line)
    assert "ERROR: payments timed out" in post_line
    assert "error.type=TimeoutError" in post_line
    exception_line = next(line for line in output.splitlines() if "exception" in line)
    assert "TimeoutError: read timed out" in exception_line
    assert "order.loaded" in output
    assert "order.size=3" in output
    assert "Traceback" not in output  # the stack trace stays in the span, off the console


def test_attribute_values_pass_through_exactly() -> None:
    spans, _ = _three_level_trace()
    stream = io.StringIO()
    ConsoleSpanExporter(stream).export(spans)
    assert "url.full=http://payments/charge?token=[REDACTED:token]" in stream.getvalue()


def test_control_characters_in_values_are_escaped_not_interpreted() -> None:
    provider, memory = _provider()
    with provider.get_tracer("test").start_as_current_span(
        "GET /\x1b[2Jhack", attributes={HTTP_ROUTE: "/a\nfake line\u202e"}
    ):
        pass
    stream = io.StringIO()
    ConsoleSpanExporter(stream, color=False).export(memory.get_finished_spans())

    output = stream.getvalue()
    assert "\x1b" not in output
    assert "\u202e" not in output
    assert "GET /\\x1b[2Jhack" in output
    assert 'http.route="/a\\nfake line\\u202e"' in output
    assert len(output.splitlines()) == 2


def test_no_ansi_when_the_stream_is_not_a_terminal() -> None:
    spans, _ = _three_level_trace()
    stream = io.StringIO()
    ConsoleSpanExporter(stream).export(spans)
    assert stream.getvalue()
    assert "\x1b[" not in stream.getvalue()


def test_ansi_with_color_true_and_error_highlighted() -> None:
    spans, _ = _three_level_trace()
    stream = io.StringIO()
    ConsoleSpanExporter(stream, color=True).export(spans)
    output = stream.getvalue()
    assert "\x1b[1;31mERROR: payments timed out\x1b[0m" in output
    assert "url.full=\x1b[0mhttp://payments/charge?token=[REDACTED:token]" in output


@pytest.fixture
def terminal() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """A real pseudo-terminal: the exporter writes to its slave end, the test reads the master end."""
    if not hasattr(os, "openpty"):
        pytest.skip("no pseudo-terminals on this platform")
    master, slave = os.openpty()
    stream = open(slave, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
    try:
        yield stream, master
    finally:
        stream.close()
        os.close(master)


def _read_terminal(master: int) -> str:
    """What was written so far: read until the terminal has been quiet for a moment (bounded)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        readable, _, _ = select.select([master], [], [], 0.2 if chunks else 5)
        if not readable:
            break
        chunks.append(os.read(master, 65536))
    return b"".join(chunks).decode("utf-8", "replace")


def test_colour_on_a_terminal(terminal: tuple[io.TextIOWrapper, int]) -> None:
    stream, master = terminal
    spans, _ = _three_level_trace()
    ConsoleSpanExporter(stream).export(spans[-1:])
    assert "\x1b[" in _read_terminal(master)


def test_no_color_respected_on_a_terminal(
    terminal: tuple[io.TextIOWrapper, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    stream, master = terminal
    spans, trace_id = _three_level_trace()
    ConsoleSpanExporter(stream).export(spans[-1:])
    output = _read_terminal(master)
    assert format_trace_id(trace_id) in output
    assert "\x1b[" not in output


def test_orphans_are_printed_on_force_flush() -> None:
    spans, trace_id = _three_level_trace()
    stream = io.StringIO()
    exporter = ConsoleSpanExporter(stream, flush_after_seconds=60)
    exporter.export(spans[:2])  # the root never arrives
    assert stream.getvalue() == ""

    assert exporter.force_flush() is True
    output = stream.getvalue()
    root_span_id = spans[2].context.span_id
    assert output.startswith(f"trace {format_trace_id(trace_id)}")
    assert "partial" in output.splitlines()[0]
    post_line = next(line for line in output.splitlines() if " POST  " in line)
    assert f"parent {format_span_id(root_span_id)} not received" in post_line
    serialize_line = next(line for line in output.splitlines() if " serialize  " in line)
    assert serialize_line.index("serialize") > post_line.index("POST")  # still nested under its parent
    assert exporter.orphan_spans == 1
    exporter.force_flush()
    assert stream.getvalue() == output  # nothing left to print


def test_orphans_are_printed_after_flush_after_seconds() -> None:
    spans, _ = _three_level_trace()
    stream = io.StringIO()
    exporter = ConsoleSpanExporter(stream, flush_after_seconds=0.05)
    try:
        exporter.export(spans[:1])
        deadline = time.monotonic() + 10
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert " serialize  " in stream.getvalue()
    finally:
        exporter.shutdown()


def test_a_child_ending_after_its_parent_is_printed_at_once() -> None:
    provider, memory = _provider()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("handler") as root:
        background = tracer.start_span("background task")  # outlives the request
    with trace.use_span(background, end_on_exit=True), tracer.start_as_current_span("step"):
        pass
    stream = io.StringIO()
    exporter = ConsoleSpanExporter(stream, flush_after_seconds=60)
    handler, step, task = memory.get_finished_spans()
    exporter.export([handler])
    exporter.export([step])  # its parent has not ended yet: it waits
    assert stream.getvalue().count("trace ") == 1
    exporter.export([task])  # parent already printed: no reason to wait for flush_after_seconds
    output = stream.getvalue()
    assert output.count("trace ") == 2
    late_header = output.splitlines()[2]
    assert "late" in late_header
    task_line = next(line for line in output.splitlines() if " background task  " in line)
    assert f"parent {format_span_id(root.get_span_context().span_id)} printed earlier" in task_line
    step_line = next(line for line in output.splitlines() if " step  " in line)
    assert step_line.index("step") > task_line.index("background")
    assert exporter.orphan_spans == 0
    assert not exporter._traces


def test_shutdown_prints_what_is_buffered_and_refuses_more() -> None:
    spans, _ = _three_level_trace()
    stream = io.StringIO()
    exporter = ConsoleSpanExporter(stream)
    exporter.export(spans[:1])
    exporter.shutdown()
    assert " serialize  " in stream.getvalue()
    assert exporter.export(spans[1:]) is SpanExportResult.FAILURE


def test_with_a_real_pipeline_each_span_exported_separately() -> None:
    stream = io.StringIO()
    exporter = ConsoleSpanExporter(stream)
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("first"), tracer.start_as_current_span("inner"):
        pass
    with tracer.start_as_current_span("second"):
        pass
    provider.shutdown()

    headers = [line for line in stream.getvalue().splitlines() if line.startswith("trace ")]
    assert len(headers) == 2
    assert "2 spans" in headers[0]
    assert "1 span" in headers[1]


def test_service_shown_where_it_changes() -> None:
    stream = io.StringIO()
    exporter = ConsoleSpanExporter(stream)
    front = TracerProvider(resource=Resource.create({"service.name": "frontend"}))
    back = TracerProvider(resource=Resource.create({"service.name": "payments"}))
    for provider in (front, back):
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    with front.get_tracer("t").start_as_current_span("checkout"):
        with back.get_tracer("t").start_as_current_span("charge"):
            pass
        with front.get_tracer("t").start_as_current_span("render"):
            pass
    lines = stream.getvalue().splitlines()
    assert "frontend, payments" in lines[0]
    assert "[frontend]" in next(line for line in lines if " checkout  " in line)
    assert "[payments]" in next(line for line in lines if " charge  " in line)
    assert "[" not in next(line for line in lines if " render  " in line)


def test_remote_parent_makes_a_local_root() -> None:
    provider, memory = _provider()
    remote = trace.SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    with provider.get_tracer("t").start_as_current_span(
        "GET /", context=trace.set_span_in_context(trace.NonRecordingSpan(remote)), kind=SpanKind.SERVER
    ):
        pass
    stream = io.StringIO()
    ConsoleSpanExporter(stream).export(memory.get_finished_spans())
    output = stream.getvalue()
    assert output.startswith("trace 4bf92f3577b34da6a3ce929d0e0e4736")
    assert "not received" not in output  # a remote parent is expected to live elsewhere


def test_buffer_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console.spans, "_MAX_BUFFERED_TRACES", 3)
    provider, memory = _provider()
    tracer = provider.get_tracer("t")
    for index in range(6):
        with tracer.start_as_current_span(f"root{index}"), tracer.start_as_current_span(f"child{index}"):
            pass
    children = [span for span in memory.get_finished_spans() if span.name.startswith("child")]
    stream = io.StringIO()
    exporter = ConsoleSpanExporter(stream, flush_after_seconds=60)
    exporter.export(children)
    assert exporter.early_flushed_traces == 3
    assert len(exporter._traces) == 3
    assert stream.getvalue().count("(partial: buffer full)") == 3
    exporter.force_flush()
    assert all(f" child{index}  " in stream.getvalue() for index in range(6))


def test_a_broken_stream_never_raises() -> None:
    spans, _ = _three_level_trace()
    stream = io.StringIO()
    stream.close()
    exporter = ConsoleSpanExporter(stream)
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert exporter.force_flush() is True
    exporter.shutdown()


def test_ascii_fallback_for_narrow_encodings() -> None:
    spans, _ = _three_level_trace()
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    ConsoleSpanExporter(stream).export(spans)
    output = raw.getvalue().decode("ascii")
    assert "`- GET /orders/{id}" in output


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "5", True])
def test_invalid_flush_after_seconds(value: object) -> None:
    with pytest.raises(ConfigurationError, match="flush_after_seconds"):
        ConsoleSpanExporter(io.StringIO(), flush_after_seconds=value)  # type: ignore[arg-type]


def test_invalid_color() -> None:
    with pytest.raises(ConfigurationError, match="color"):
        ConsoleLogExporter(io.StringIO(), color="yes")  # type: ignore[arg-type]


def test_default_stream_is_stderr_at_write_time(capsys: pytest.CaptureFixture[str]) -> None:
    spans, trace_id = _three_level_trace()
    ConsoleSpanExporter().export(spans)
    captured = capsys.readouterr()
    assert format_trace_id(trace_id) in captured.err
    assert captured.out == ""


# ------------------------------------------------------------------------------------------------ logs


def test_log_line_has_time_severity_ids_body_and_attributes() -> None:
    stream = io.StringIO()
    resource = Resource.create({"service.name": "checkout"})
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(SimpleLogRecordProcessor(ConsoleLogExporter(stream)))
    tracer = TracerProvider(resource=resource).get_tracer("t")
    with tracer.start_as_current_span("request") as span:
        logs.get_logger("app.orders").emit(
            LogRecord(
                timestamp=time.time_ns(),
                body="order created\nby user",
                severity_text="ERROR",
                severity_number=SeverityNumber.ERROR,
                attributes={"order.id": 42, "user.email": "[REDACTED:email]"},
            )
        )
    logs.shutdown()

    line = stream.getvalue()
    assert line.count("\n") == 1
    context = span.get_span_context()
    assert f"[{format_trace_id(context.trace_id)[:8]}/{format_span_id(context.span_id)[:8]}]" in line
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3}  ERROR  app\.orders  ", line)
    assert "order created\\nby user" in line
    assert "order.id=42" in line
    assert "user.email=[REDACTED:email]" in line
    assert "\x1b[" not in line


def test_log_colour_rule() -> None:
    stream = io.StringIO()
    exporter = ConsoleLogExporter(stream, color=True)
    logs = LoggerProvider()
    logs.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logs.get_logger("x").emit(LogRecord(body="careful", severity_number=SeverityNumber.WARN))
    assert "\x1b[33mWARN \x1b[0m" in stream.getvalue()
    exporter.shutdown()
    assert exporter.export([]) is LogRecordExportResult.FAILURE


# ------------------------------------------------------------------------------------------------ metrics


def test_metrics_summary_has_names_units_attributes_and_values() -> None:
    stream = io.StringIO()
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(stream), export_interval_millis=3_600_000)
    meters = MeterProvider(resource=Resource.create({"service.name": "checkout"}), metric_readers=[reader])
    meter = meters.get_meter("test")
    meter.create_counter("orders.created", unit="{order}").add(3, {HTTP_ROUTE: "/orders"})
    histogram = meter.create_histogram("lookup.duration", unit="ms")
    for value in (1, 2, 3, 40, 900):
        histogram.record(value, {"cache": "[REDACTED:token]"})
    meter.create_up_down_counter("queue.depth").add(-2)
    meters.force_flush()
    meters.shutdown()

    output = _plain(stream.getvalue())
    assert output.startswith("metrics  checkout")
    assert re.search(r"orders\.created \[\{order\}\]  counter  \{http\.route=/orders\}  3\n", output)
    histogram_line = next(line for line in output.splitlines() if "lookup.duration" in line)
    assert "[ms]" in histogram_line
    assert "{cache=[REDACTED:token]}" in histogram_line
    assert "count=5 sum=946 min=1 max=900" in histogram_line
    assert "p50≤5" in histogram_line  # the bucket (0, 5] holds the median
    assert "p99≤900" in histogram_line
    assert "queue.depth  updown  -2" in output


def test_metric_exporter_keeps_sdk_preferences() -> None:
    from opentelemetry.sdk.metrics import Counter
    from opentelemetry.sdk.metrics.export import AggregationTemporality

    exporter = ConsoleMetricExporter(io.StringIO(), preferred_temporality={Counter: AggregationTemporality.DELTA})
    assert exporter._preferred_temporality == {Counter: AggregationTemporality.DELTA}
    assert ConsoleMetricExporter(io.StringIO())._preferred_temporality is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_an_empty_buffer() -> None:
    spans, _ = _three_level_trace()
    read_end, write_end = os.pipe()
    parent_stream = io.StringIO()
    exporter = ConsoleSpanExporter(parent_stream, flush_after_seconds=60)
    exporter.export(spans[:1])  # buffered in the parent
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            child_stream = io.StringIO()
            exporter._stream = child_stream
            exporter.export(spans[1:])  # POST and its root: serialize stayed with the parent
            output = child_stream.getvalue()
            code = 0 if " POST  " in output and " serialize  " not in output else 2
        finally:
            os.write(write_end, str(code).encode())
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    result = os.read(read_end, 8)
    os.close(read_end)
    assert result == b"0"
    assert os.WEXITSTATUS(status) == 0
    exporter.force_flush()
    assert " serialize  " in parent_stream.getvalue()
