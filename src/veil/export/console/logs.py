"""The console log exporter: one line per log record (time, severity, logger, short trace/span id, body, attributes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.semconv.attributes.code_attributes import (
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
)
from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_STACKTRACE
from opentelemetry.trace import format_span_id, format_trace_id

from veil.export.console._terminal import _clock, _render_and_write, _style_for, _text, _value

__all__ = ["ConsoleLogExporter"]

# Source-location attributes the logging bridge puts on every record: noise on a one-line view.
_LOG_HIDDEN_ATTRIBUTES = frozenset((CODE_FILE_PATH, CODE_FUNCTION_NAME, CODE_LINE_NUMBER))

_SEVERITY_STYLES = (
    ("FATAL", "error"),
    ("ERROR", "error"),
    ("WARN", "yellow"),
    ("INFO", "green"),
    ("DEBUG", "dim"),
)


class ConsoleLogExporter(LogRecordExporter):
    """Prints one line per log record: time, severity, logger, short trace/span id, body and attributes.

    `stream` defaults to `sys.stderr`; colour follows the same rule as `ConsoleSpanExporter`. The trace and
    span ids are cut to their first 8 hex digits, enough to find the trace printed by the span exporter.
    """

    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None) -> None:
        self._stream = stream
        self._style = _style_for(stream, color)
        self._shutdown = False

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if self._shutdown:
            return LogRecordExportResult.FAILURE
        ok = _render_and_write(
            self._stream, lambda: "".join(self._line(record) + "\n" for record in batch), "export.console.logs"
        )
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        self._shutdown = True

    def _line(self, record: ReadableLogRecord) -> str:
        style = self._style
        log = record.log_record
        severity = log.severity_text or (log.severity_number.name if log.severity_number is not None else "")
        severity_style = next(
            (name for prefix, name in _SEVERITY_STYLES if severity.upper().startswith(prefix)), "bold"
        )
        parts = [
            style("dim", _clock(log.timestamp or log.observed_timestamp)),
            style(severity_style, f"{severity:<5}"),
        ]
        scope = record.instrumentation_scope
        if scope is not None and scope.name:
            parts.append(style("blue", _text(scope.name, 60)))
        if log.trace_id:
            ids = format_trace_id(log.trace_id)[:8]
            if log.span_id:
                ids += "/" + format_span_id(log.span_id)[:8]
            parts.append(style("cyan", f"[{ids}]"))
        body = log.body
        if body is not None:
            parts.append(_text(body, 500) if isinstance(body, str) else _value(body, 500))
        attributes = log.attributes or {}
        for key, value in attributes.items():
            if key in _LOG_HIDDEN_ATTRIBUTES or key == EXCEPTION_STACKTRACE:
                continue
            parts.append(f"{style('dim', _text(str(key), 60) + '=')}{_value(value)}")
        return "  ".join(parts)
