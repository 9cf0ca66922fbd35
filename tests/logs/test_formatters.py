"""JSONFormatter, the structlog processors and the loguru patcher."""

from __future__ import annotations

import datetime
import io
import json
import logging
import math
from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import veil
from veil.logging import JSONFormatter, StructlogRedactor, add_trace_context, loguru_patcher

TRACER = TracerProvider().get_tracer("tests")


def hex_ids(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def json_lines(formatter: logging.Formatter, emit: Callable[[logging.Logger], None]) -> list[dict[str, object]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("app.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    return [json.loads(line) for line in lines]


def test_one_object_per_line_with_the_fixed_fields() -> None:
    def emit(logger: logging.Logger) -> None:
        logger.info("outside")
        with TRACER.start_as_current_span("work") as span:
            emit.ids = hex_ids(span)  # type: ignore[attr-defined]
            logger.warning("inside\nwith a newline", extra={"order_id": 7})

    outside, inside = json_lines(JSONFormatter(service_name="shop", redact=False), emit)
    assert set(outside) == {"timestamp", "level", "logger", "message", "service"}
    assert outside["level"] == "INFO" and outside["logger"] == "app.json" and outside["service"] == "shop"
    timestamp = str(outside["timestamp"])
    assert timestamp.endswith("Z")
    parsed = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    assert abs((datetime.datetime.now(datetime.timezone.utc) - parsed).total_seconds()) < 60
    assert (inside["trace_id"], inside["span_id"]) == emit.ids  # type: ignore[attr-defined]
    assert inside["message"] == "inside\nwith a newline" and inside["order_id"] == 7


def test_fields_set_by_the_instrumentation_are_used(configure_veil: Callable[..., veil.Telemetry]) -> None:
    configure_veil(service_name="billing", traces_exporter="none")
    veil.instrument("logging")

    def emit(logger: logging.Logger) -> None:
        with trace.get_tracer("tests").start_as_current_span("work") as span:
            emit.ids = hex_ids(span)  # type: ignore[attr-defined]
            logger.info("correlated")
        logger.info("outside")

    inside, outside = json_lines(JSONFormatter(redact=False), emit)
    assert (inside["trace_id"], inside["span_id"]) == emit.ids  # type: ignore[attr-defined]
    assert inside["service"] == "billing"
    assert "trace_id" not in outside and "otelTraceID" not in outside and "service_name" not in outside


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_any_value_type_is_serialised() -> None:
    circular: list[object] = [1]
    circular.append(circular)
    extra = {
        "when": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc),
        "raw": b"\xffbytes",
        "tags": {"b"},
        "nan": math.nan,
        "circular": circular,
        "keys": {1: "one", (2, 3): "tuple key"},
        "bad": Unprintable(),
        "surrogate": "x\udc80y",
        "message": "clashes with a fixed key",
    }

    def emit(logger: logging.Logger) -> None:
        logger.info("values", extra={key: value for key, value in extra.items() if key != "message"})
        logger.info("clash", extra={"service": "custom"})

    first, second = json_lines(JSONFormatter(service_name="s", redact=False), emit)
    assert first["when"] == "2024-05-01T12:00:00+00:00"
    assert first["raw"] == "\ufffdbytes" and first["tags"] == ["b"] and first["nan"] == "nan"
    assert first["keys"] == {"1": "one", "(2, 3)": "tuple key"}
    assert first["bad"] == "<unrepresentable Unprintable>"
    assert first["surrogate"] == "x?y"
    assert isinstance(first["circular"], list)
    assert first["message"] == "values"
    assert second["service"] == "s" and second["extra.service"] == "custom"


def test_message_fields_and_exceptions_are_redacted() -> None:
    def emit(logger: logging.Logger) -> None:
        try:
            raise PermissionError("login failed for password=hunter2secret")
        except PermissionError:
            logger.exception(
                "user signed in with password=hunter2secret", extra={"password": "hunter2secret", "user": "bob"}
            )

    (line,) = json_lines(JSONFormatter(service_name="s"), emit)
    text = json.dumps(line)
    assert "hunter2secret" not in text
    assert line["password"] == "[REDACTED:password]" and line["user"] == "bob"
    assert line["exception.type"] == "PermissionError"
    assert "[REDACTED" in str(line["message"]) and "[REDACTED" in str(line["exception.stacktrace"])


def test_redaction_can_be_switched_off() -> None:
    def emit(logger: logging.Logger) -> None:
        logger.info("password=hunter2secret", extra={"password": "hunter2secret"})

    (line,) = json_lines(JSONFormatter(redact=False), emit)
    assert line["password"] == "hunter2secret" and line["message"] == "password=hunter2secret"


def test_structlog_processors() -> None:
    structlog = pytest.importorskip("structlog")
    stream = io.StringIO()
    structlog.configure(
        processors=[add_trace_context, StructlogRedactor(), structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    try:
        log = structlog.get_logger()
        log.info("outside")
        with TRACER.start_as_current_span("work") as span:
            log.info("paid with token=sk_live_abcdefghijklmnopqrstuvwx", password="hunter2secret", order=7)
    finally:
        structlog.reset_defaults()
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside
    assert (inside["trace_id"], inside["span_id"]) == hex_ids(span)
    assert inside["trace_flags"] == format(span.get_span_context().trace_flags, "02x")
    assert inside["password"] == "[REDACTED:password]" and inside["order"] == 7
    assert "sk_live_abcdefghijklmnopqrstuvwx" not in inside["event"]


def test_loguru_patcher() -> None:
    loguru = pytest.importorskip("loguru")
    lines: list[str] = []
    logger = loguru.logger.patch(loguru_patcher)
    sink = logger.add(lines.append, format="{extra[trace_id]}|{extra[span_id]}|{extra[trace_flags]}|{message}")
    try:
        logger.info("outside")
        with TRACER.start_as_current_span("work") as span:
            logger.bind(order=7).info("inside")
    finally:
        logger.remove(sink)
    trace_id, span_id = hex_ids(span)
    flags = format(span.get_span_context().trace_flags, "02x")
    assert [line.rstrip("\n") for line in lines] == [
        f"{'0' * 32}|{'0' * 16}|00|outside",
        f"{trace_id}|{span_id}|{flags}|inside",
    ]
