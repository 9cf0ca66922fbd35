"""The leak canary: the `veil_capture` fixture and `assert_no_leaks`."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider

from veil import pytest_plugin
from veil.instrumentation import stdlib_logging as veil_logging
from veil.instrumentation.stdlib_logging import LoggingInstrumentor
from veil.pytest_plugin import LeakError, TelemetryCapture
from veil.redaction import Redactor


def test_capture_sees_spans_and_logs_redacted_as_exported(veil_capture: TelemetryCapture) -> None:
    tracer = trace.get_tracer("canary")
    with tracer.start_as_current_span("checkout", attributes={"password": "canary-pw-1", "http.route": "/pay"}):
        pass
    logger = logging.getLogger("veil.tests.canary")
    handler = LoggingHandler(logger_provider=get_logger_provider())  # type: ignore[arg-type]
    logger.addHandler(handler)
    try:
        logger.warning("paid with card 4111 1111 1111 1111")
    finally:
        logger.removeHandler(handler)
    (span,) = [span for span in veil_capture.spans if span.name == "checkout"]
    assert span.attributes["password"] == "[REDACTED:password]"
    assert any("[REDACTED:payment_card]" in str(record.log_record.body) for record in veil_capture.logs)
    veil_capture.assert_no_leaks("canary-pw-1")


def test_unredacted_capture_reports_category_and_location() -> None:
    capture = TelemetryCapture(redactor=None)  # what a pipeline without redaction would export
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("op", attributes={"note": "mail bob@example.com"}):
        pass
    for span in exporter.get_finished_spans():
        capture.add_span(span)
    with pytest.raises(LeakError) as error:
        capture.assert_no_leaks()
    message = str(error.value)
    assert "email in span 'op' attribute 'note'" in message
    assert "bob@example.com" not in message


def test_planted_values_are_found_even_when_no_detector_knows_them() -> None:
    capture = TelemetryCapture(Redactor.default())
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("op", attributes={"note": "my-unique-canary-7781"}) as span:
        pass
    capture.add_span(span)  # type: ignore[arg-type]
    capture.assert_no_leaks()  # nothing a detector recognises ...
    with pytest.raises(LeakError, match="planted in span 'op' attribute 'note'"):
        capture.assert_no_leaks("my-unique-canary-7781")  # ... but the planted value is caught


def test_metric_reader_of_the_capture(veil_capture: TelemetryCapture) -> None:
    provider = MeterProvider(metric_readers=[veil_capture.metric_reader])
    provider.get_meter("t").create_counter("logins").add(1, {"user.email": "bob@example.com"})
    (data,) = veil_capture.metrics
    point = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    assert point.attributes["user.email"] == "[REDACTED:email]"
    veil_capture.assert_no_leaks("bob@example.com")
    provider.shutdown()


def test_plugin_is_registered_and_fails_a_leaking_test(tmp_path: Path) -> None:
    (tmp_path / "test_leaky.py").write_text(
        textwrap.dedent(
            """
            from veil.pytest_plugin import TelemetryCapture
            from veil.redaction import Redactor

            def test_leak(veil_capture):
                raw = TelemetryCapture(redactor=None)
                from opentelemetry.sdk.trace import TracerProvider
                tracer = TracerProvider().get_tracer("t")
                with tracer.start_as_current_span("s", attributes={"k": "x@example.org"}) as s:
                    pass
                raw.add_span(s)
                raw.assert_no_leaks()
            """
        )
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_leaky.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "email in span 's' attribute 'k'" in result.stdout
    assert "x@example.org" not in result.stdout.split("LeakError")[-1]


USER_TESTS = """
import logging

import pytest
from flask import Flask, Response, request

import veil

veil.configure(service_name="shop")
log = logging.getLogger("shop.login")
app = Flask("shop")


@app.post("/login")
def login():
    user, password = request.form["user"], request.form["password"]
    if request.args.get("careless"):
        log.warning("login failed for %s with %s", user, password)
    else:
        log.warning("login failed for %s", user)
    return "no", 401


@app.get("/feed")
def feed():
    log.warning("feed opened")
    return Response(iter(["a", "b"]))


@pytest.fixture
def client():
    return app.test_client()


def test_clean_login(client, veil_capture):
    assert client.post("/login", data={"user": "bob", "password": "canary-hunter2"}).status_code == 401
    assert [span.name for span in veil_capture.spans] == ["POST /login"]
    veil_capture.assert_no_leaks("canary-hunter2")


def test_careless_login_is_caught_in_the_logs(client, veil_capture):
    client.post("/login?careless=1", data={"user": "bob", "password": "canary-hunter2"})
    veil_capture.assert_no_leaks("canary-hunter2")


def test_nothing_captured(veil_capture):
    veil_capture.assert_no_leaks("canary-hunter2")


def test_nothing_expected(veil_capture):
    veil_capture.assert_no_leaks("canary-hunter2", allow_empty=True)


def test_streamed_body_not_read(client, veil_capture):
    assert client.get("/feed").status_code == 200
    veil_capture.assert_no_leaks()


def test_streamed_body_not_read_on_purpose(client, veil_capture):
    assert client.get("/feed").status_code == 200
    veil_capture.assert_no_leaks(allow_in_flight=True)
"""


def test_the_canary_cannot_pass_without_looking(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's test file: logs are caught with no logs exporter; an empty or unfinished capture fails."""
    for signal in ("TRACES", "METRICS", "LOGS"):
        monkeypatch.setenv(f"OTEL_{signal}_EXPORTER", "none")
    pytester.makepyfile(test_shop=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "FAILED test_shop.py::test_careless_login_is_caught_in_the_logs - *",
            "FAILED test_shop.py::test_nothing_captured - *",
            "FAILED test_shop.py::test_streamed_body_not_read - *",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E * planted in log record #0 body",
            "E * veil_capture captured nothing (no span, log record or metric point)*allow_empty=True*",
            "E * 1 request span(s) still in flight ('GET /feed')*allow_in_flight=True*",
        ]
    )
    assert "canary-hunter2" not in result.stdout.str().split("short test summary")[-1]


def _capture_around(emit: Callable[[], None]) -> TelemetryCapture:
    """What `veil_capture` does around a test, with `emit()` as the test."""
    capture = TelemetryCapture(Redactor.default())
    pytest_plugin._dispatcher.active.append(capture)
    try:
        with pytest_plugin._standard_library_records():
            emit()
    finally:
        pytest_plugin._dispatcher.active.remove(capture)
    return capture


def test_records_are_captured_once_where_veil_exports_them() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    instrumentor = LoggingInstrumentor()
    instrumentor.instrument(logger_provider=provider, export_level="warning")
    try:
        capture = _capture_around(lambda: logging.getLogger("shop").warning("card 4111 1111 1111 1111"))
    finally:
        instrumentor.uninstrument()
    (record,) = capture.logs
    assert "[REDACTED:payment_card]" in str(record.log_record.body)
    assert len(exporter.get_finished_logs()) == 1  # veil's own export is untouched


def test_without_a_logs_export_records_are_captured_and_logging_is_restored() -> None:
    original = logging.Logger.__dict__.get("callHandlers")
    capture = _capture_around(lambda: logging.getLogger("shop").warning("mail bob@example.com"))
    (record,) = capture.logs
    assert "[REDACTED:email]" in str(record.log_record.body)
    assert logging.Logger.__dict__.get("callHandlers") is original
    instrumentor = LoggingInstrumentor()
    instrumentor.instrument(span_events="warning")  # veil's logging without export: span events only
    try:
        installed = veil_logging._Patch.export
        capture = _capture_around(lambda: logging.getLogger("shop").warning("plain"))
        assert veil_logging._Patch.export is installed  # put back as it was
    finally:
        instrumentor.uninstrument()
    assert [str(record.log_record.body) for record in capture.logs] == ["plain"]
