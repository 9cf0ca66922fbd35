"""Trace-correlated log output: a JSON formatter for the standard library, a structlog processor, a loguru patcher.

* `JSONFormatter` writes one JSON object per line (timestamp, level, logger, message, trace_id, span_id,
  service, exception.*, extra fields) for containers whose stdout is shipped to a log backend. Any value is
  serialised (unknown types become strings, never an exception), and the message, exception text and every
  field go through veil's redaction engine first, as exported telemetry does.
* `add_trace_context` is a structlog processor adding `trace_id`, `span_id`, `trace_flags` and `service_name`
  inside a span; `StructlogRedactor` is a processor applying the redaction engine to the event dict.
* `loguru_patcher` puts the same four fields into a loguru record's `extra` (zeros outside a span, so a format
  naming `{extra[trace_id]}` never fails).

None of these needs the logging instrumentation; records it already correlated are used as they are.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import threading
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import trace

from veil._sdk import SPAN_KEY, current_context_reader
from veil.instrumentation.stdlib_logging import (
    _RECORD_ATTRIBUTES,
    empty_fields,
    exception_attributes,
    safe_text,
    service_name_of,
)

__all__ = ["JSONFormatter", "StructlogRedactor", "add_trace_context", "loguru_patcher", "trace_fields"]

_MAX_DEPTH = 16
_current_context = current_context_reader()


class _LazyRedactor:
    """The redactor of veil's current settings, built on first use (None when redaction is off)."""

    def __init__(self, enabled: bool | None, redactor: Any) -> None:
        self._enabled = enabled
        self._redactor = redactor
        self._resolved = redactor is not None or enabled is False

    def get(self) -> Any:
        if not self._resolved:
            from veil import settings as settings_module

            settings = settings_module.current()
            if self._enabled is None:
                self._enabled = settings.redaction_enabled
            if self._enabled:
                from veil.redaction import Redactor

                self._redactor = Redactor.from_settings(settings)
            self._resolved = True
        return self._redactor if self._enabled is not False else None


class _Service:
    """service.name of the global tracer provider (or the settings), recomputed when the provider changes."""

    _provider: object = None
    _name = ""
    _lock = threading.Lock()

    @classmethod
    def name(cls) -> str:
        provider = trace.get_tracer_provider()
        if provider is not cls._provider:
            name = service_name_of(provider)
            if not name:
                from veil import settings as settings_module

                name = settings_module.current().service_name or ""
            with cls._lock:
                cls._provider, cls._name = provider, name
        return cls._name


def trace_fields() -> dict[str, str] | None:
    """`trace_id`, `span_id` and `trace_flags` (hex) of the active span; None outside a valid span."""
    span = _current_context().get(SPAN_KEY)
    if not isinstance(span, trace.Span):
        return None
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return None
    return {
        "trace_id": format(span_context.trace_id, "032x"),
        "span_id": format(span_context.span_id, "016x"),
        "trace_flags": format(span_context.trace_flags, "02x"),
    }


# ------------------------------------------------------------------------------------------------ JSON


def _json_default(value: object) -> object:
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset)):
        return [_plain(item, 1) for item in value]
    return safe_text(value)


def _plain(value: object, depth: int) -> object:
    """A JSON-safe copy of `value`: finite numbers, string keys, no cycles (bounded depth)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= _MAX_DEPTH:
        return safe_text(value)
    if isinstance(value, Mapping):
        return {safe_text(key): _plain(item, depth + 1) for key, item in list(value.items())}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item, depth + 1) for item in list(value)]
    return _plain(_json_default(value), depth + 1)


def _dumps(payload: dict[str, Any]) -> str:
    try:
        line = json.dumps(payload, default=_json_default, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        line = json.dumps(_plain(payload, 0), ensure_ascii=False, separators=(",", ":"))
    if not line.isascii():
        line = line.encode("utf-8", "replace").decode("utf-8")  # lone surrogates would break the stream
    return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, trace_id, span_id, service, extras.

    `timestamp` is ISO 8601 UTC with milliseconds. `trace_id`/`span_id` are present inside a span (from the
    record's fields when the logging instrumentation set them, else from the active span when the record is
    formatted on the thread that created it). Exceptions add `exception.type`, `exception.message` and
    `exception.stacktrace`; `stack_info` adds `stack_info`. `extra=` fields keep their names (a name used by
    the fixed keys is prefixed with `extra.`).

    `redact`: None (default) follows VEIL_REDACTION_ENABLED; `redactor` overrides the one built from
    settings. `service_name` defaults to the service.name veil was configured with. `static_fields` are added
    to every line (e.g. {"env": "prod"}).
    """

    def __init__(
        self,
        *,
        service_name: str | None = None,
        redact: bool | None = None,
        redactor: Any = None,
        static_fields: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__()
        self._service_name = service_name
        self._redaction = _LazyRedactor(redact, redactor)
        self._static = dict(static_fields or {})

    def format(self, record: logging.LogRecord) -> str:
        redactor = self._redaction.get()
        try:
            message = record.getMessage()
        except Exception:
            message = f"{safe_text(record.msg)} {safe_text(record.args)}"
        if redactor is not None:
            message = redactor.redact(None, message)
        payload: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        ids = _record_trace_fields(record)
        if ids is not None:
            payload["trace_id"], payload["span_id"] = ids
        service = self._service_name
        if service is None:
            recorded = record.__dict__.get("service_name")
            service = recorded if isinstance(recorded, str) and recorded else _Service.name()
        if service:
            payload["service"] = service
        if record.exc_info:
            for key, text in exception_attributes(record.exc_info).items():
                payload[key] = redactor.redact(None, text) if redactor is not None else text
        elif record.exc_text:
            payload["exception.stacktrace"] = redactor.redact(None, record.exc_text) if redactor else record.exc_text
        if record.stack_info:
            payload["stack_info"] = record.stack_info
        extras = [(key, value) for key, value in self._static.items()]
        values = record.__dict__
        extras.extend((key, values[key]) for key in values.keys() - _RECORD_ATTRIBUTES if isinstance(key, str))
        for key, value in extras:
            name = f"extra.{key}" if key in payload else key
            payload[name] = redactor.redact(key, value) if redactor is not None else value
        return _dumps(payload)


def _timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _record_trace_fields(record: logging.LogRecord) -> tuple[str, str] | None:
    values = record.__dict__
    trace_id = values.get("trace_id")
    if isinstance(trace_id, str):
        span_id = values.get("span_id")
        if trace_id.strip("0") and isinstance(span_id, str):
            return trace_id, span_id
        return None
    if record.thread != threading.get_ident():
        return None  # formatted elsewhere (a queue listener): the active span is not the record's
    fields = trace_fields()
    return None if fields is None else (fields["trace_id"], fields["span_id"])


# ---------------------------------------------------------------------------------------------- structlog


def add_trace_context(logger: object, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: `trace_id`, `span_id`, `trace_flags` and `service_name` inside a span.

    Use it before the renderer: `structlog.configure(processors=[..., veil.logging.add_trace_context,
    structlog.processors.JSONRenderer()])`. Keys already in the event dict are kept.
    """
    fields = trace_fields()
    if fields is not None:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
        service = _Service.name()
        if service:
            event_dict.setdefault("service_name", service)
    return event_dict


class StructlogRedactor:
    """structlog processor applying veil's redaction engine to every value of the event dict.

    The `event` (the message) is redacted as free text, other values by their key (`password=...` is
    replaced whatever it holds). Place it just before the renderer. `redact`/`redactor` as in JSONFormatter.
    """

    def __init__(self, *, redact: bool | None = None, redactor: Any = None) -> None:
        self._redaction = _LazyRedactor(redact, redactor)

    def __call__(self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        redactor = self._redaction.get()
        if redactor is None:
            return event_dict
        for key, value in list(event_dict.items()):
            redacted = redactor.redact(None if key == "event" else key, value)
            if redacted is not value:
                event_dict[key] = redacted
        return event_dict


# ------------------------------------------------------------------------------------------------ loguru


def loguru_patcher(record: MutableMapping[str, Any]) -> None:
    """loguru patcher: `trace_id`, `span_id`, `trace_flags`, `service_name` in `record["extra"]`.

    `logger = logger.patch(veil.logging.loguru_patcher)` or `logger.configure(patcher=...)`; outside a span
    the ids are zeros, so `{extra[trace_id]}` in a format always resolves.
    """
    extra = record["extra"]
    fields = trace_fields()
    service = _Service.name()
    if fields is None:
        empty = empty_fields(service)
        fields = {key: str(empty[key]) for key in ("trace_id", "span_id", "trace_flags")}
    for key, value in fields.items():
        extra.setdefault(key, value)
    extra.setdefault("service_name", service)
