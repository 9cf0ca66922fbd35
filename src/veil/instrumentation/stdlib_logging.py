"""Standard-library `logging`: trace-correlated log records, exported as OTLP logs.

`LoggingInstrumentor().instrument()` (entry point `logging`, run by `veil.configure()`) does three things:

* **Correlation.** A record factory gives every `LogRecord`, from any logger and any thread, the fields
  `trace_id` (32 hex digits), `span_id` (16), `trace_flags` (`01` sampled, `00` not) and `service_name`, plus
  the upstream names `otelTraceID`, `otelSpanID`, `otelServiceName` and `otelTraceSampled`, so format strings
  written for opentelemetry-instrumentation-logging keep working. Outside a span the fields hold zeros (and
  `"0"`/`False` for the upstream names), so a format naming them never fails. The strings are built once per
  span, not per record. `OTEL_PYTHON_LOG_CORRELATION=true` also gives the root logger a handler showing them.
* **Export.** When the global LoggerProvider is the one `veil.configure()` built with a logs exporter
  (OTEL_LOGS_EXPORTER), every record at or above VEIL_LOGS_EXPORT_LEVEL becomes an OTLP log record carrying
  the active trace and span ids, extra fields as attributes, and `exception.*` attributes. There is no handler
  to lose: the export runs where `Logger.callHandlers` starts, so `basicConfig(force=True)`, `dictConfig` and
  `root.handlers = []` cannot remove or duplicate it, `propagate=False` loggers (uvicorn, gunicorn) are
  exported too, and the stdlib's last-resort stderr output for unconfigured apps is unchanged. No lock is
  taken, so a flush cannot deadlock with a logging exporter. Records of `opentelemetry.*` and `veil.*` loggers,
  records logged on the SDK's export threads, and records logged while a record is being exported are never
  exported (no recursion). Redaction happens on the export thread, in the exporter wrapper every logs exporter
  gets from `veil.configure()` (`veil.redaction.export.RedactingLogExporter`).
* **Span events (opt-in).** With VEIL_LOGS_SPAN_EVENTS, records at that level and above are also recorded as
  `log` events on the active span.
* **Output redaction.** With redaction on (VEIL_REDACTION_LOG_OUTPUT, default true), every handler, the
  last-resort one included, gets a redacted copy of each record (`veil.redaction.output`): arguments, the
  formatted message, the traceback, `stack_info` and `extra=` fields; level, logger, exception type and
  message template are kept. structlog and loguru output is redacted through hooks placed when they are
  imported.

`uninstrument()` restores the previous record factory, `Logger.callHandlers` and the root handler it added.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from collections.abc import Callable, Collection, Iterator
from types import TracebackType
from typing import Any, Final

from opentelemetry import trace
from opentelemetry._logs import LoggerProvider, SeverityNumber
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.semconv.attributes.code_attributes import (
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    CODE_STACKTRACE,
)
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME

from veil._guard import log_once
from veil._sdk import SPAN_KEY, current_context_reader
from veil.instrumentation.providers import log_export_provider
from veil.redaction.output import LogOutputRedactor, install_library_hooks

__all__ = [
    "DEFAULT_LOGGING_FORMAT",
    "FIELD_NAMES",
    "LogHook",
    "LoggingInstrumentor",
    "empty_fields",
    "exception_attributes",
    "safe_text",
    "service_name_of",
]

_instruments: tuple[str, ...] = ()  # the standard library: always available

LogHook = Callable[[trace.Span, logging.LogRecord], None]

FIELD_NAMES: Final = (
    "trace_id",
    "span_id",
    "trace_flags",
    "service_name",
    "otelTraceID",
    "otelSpanID",
    "otelServiceName",
    "otelTraceSampled",
)
DEFAULT_LOGGING_FORMAT: Final = (
    "%(asctime)s %(levelname)s [%(name)s] [trace_id=%(trace_id)s span_id=%(span_id)s "
    "service.name=%(service_name)s] %(message)s"
)
LOG_EVENT_NAME: Final = "log"
# veil's own attribute names on `log` span events (semantic conventions define none for this).
EVENT_SEVERITY: Final = "veil.log.severity"
EVENT_LOGGER: Final = "veil.log.logger"
EVENT_MESSAGE: Final = "veil.log.message"

_CACHE_ATTRIBUTE = "_veil_log_fields"
_LOGGER_CACHE_LIMIT = 2048
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Loggers whose records are never exported: the SDK and exporters, and veil itself (both run on export paths).
_UNEXPORTED_LOGGERS: Final = frozenset({"opentelemetry", "veil"})
# Threads the SDK and veil export from (OtelBatch*RecordProcessor, OtelPeriodicExportingMetricReader, veil-*).
_UNEXPORTED_THREAD_PREFIXES: Final = ("Otel", "veil-")
_SEVERITY_TEXT: Final = {"WARNING": "WARN", "CRITICAL": "FATAL"}
_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# The attributes every LogRecord has; anything else on a record is an `extra=` field.
_RECORD_ATTRIBUTES: Final = frozenset(
    {
        *logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
        "taskName",
        *FIELD_NAMES,
    }
)


# ---------------------------------------------------------------------------------------- shared helpers


def empty_fields(service_name: str) -> dict[str, object]:
    """The correlation fields of a record created outside any span."""
    return {
        "trace_id": "0" * 32,
        "span_id": "0" * 16,
        "trace_flags": "00",
        "service_name": service_name,
        "otelTraceID": "0",
        "otelSpanID": "0",
        "otelServiceName": service_name,
        "otelTraceSampled": False,
    }


def _span_fields(span_context: trace.SpanContext, service_name: str) -> dict[str, object]:
    trace_id = format(span_context.trace_id, "032x")
    span_id = format(span_context.span_id, "016x")
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "trace_flags": format(span_context.trace_flags, "02x"),
        "service_name": service_name,
        "otelTraceID": trace_id,
        "otelSpanID": span_id,
        "otelServiceName": service_name,
        "otelTraceSampled": span_context.trace_flags.sampled,
    }


def service_name_of(tracer_provider: object | None = None) -> str:
    """`service.name` of the tracer provider's resource (the global one by default), or ''."""
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    resource = getattr(provider, "resource", None)
    attributes = getattr(resource, "attributes", None)
    if attributes is not None:
        name = attributes.get(SERVICE_NAME)
        if isinstance(name, str):
            return name
    return ""


def safe_text(value: object) -> str:
    """`str(value)` that never raises."""
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unrepresentable {type(value).__qualname__}>"


def _exception_type_name(exception_type: type[BaseException]) -> str:
    module = exception_type.__module__
    name = exception_type.__qualname__
    return name if module in ("builtins", "__main__") else f"{module}.{name}"


ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]


def exception_attributes(exc_info: ExcInfo) -> dict[str, str]:
    """exception.type / exception.message / exception.stacktrace of a record's `exc_info`."""
    exception_type, exception, tb = exc_info
    if exception_type is None:
        return {}
    attributes = {EXCEPTION_TYPE: _exception_type_name(exception_type)}
    if exception is not None:
        attributes[EXCEPTION_MESSAGE] = safe_text(exception)
    with contextlib.suppress(Exception):
        attributes[EXCEPTION_STACKTRACE] = "".join(traceback.format_exception(exception_type, exception, tb))
    return attributes


def _attribute_value(value: object) -> Any:
    """A valid OpenTelemetry attribute value for any Python value (strings for what has no equivalent)."""
    if isinstance(value, (str, bool, float, bytes)):
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if isinstance(value, (list, tuple)):
        kinds = {type(item) for item in value}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            return tuple(value)
        return tuple(safe_text(item) for item in value)
    return safe_text(value)


def _severity_number(levelno: int) -> SeverityNumber:
    """Python levels on the OpenTelemetry scale: DEBUG (10) -> DEBUG, 11..13 -> DEBUG2..4, ... 50+ -> FATAL."""
    if levelno < logging.DEBUG:
        return SeverityNumber.UNSPECIFIED
    base = min(levelno, logging.CRITICAL) // 10 * 10
    step = min(levelno - base, 3)
    return SeverityNumber(SeverityNumber.DEBUG.value + (base // 10 - 1) * 4 + step)


def _severity_text(levelname: str) -> str:
    return _SEVERITY_TEXT.get(levelname, levelname)


# ------------------------------------------------------------------------------------------- correlation


class _Correlation:
    """What the record factory needs, fixed at instrument time."""

    def __init__(self, service_name: str, hook: LogHook | None) -> None:
        self.service_name = service_name
        self.empty = empty_fields(service_name)
        self.hook = hook
        self.active = True

    def fields_for(self, span: object) -> dict[str, object]:
        """The fields of records created inside `span`, built once and kept on the span."""
        get_span_context = getattr(span, "get_span_context", None)
        span_context = get_span_context() if get_span_context is not None else None
        if span_context is None or not span_context.is_valid:
            fields = self.empty
        else:
            fields = _span_fields(span_context, self.service_name)
        with contextlib.suppress(AttributeError, TypeError):
            setattr(span, _CACHE_ATTRIBUTE, (self, fields))
        return fields


def _build_factory(previous: Callable[..., logging.LogRecord], state: _Correlation) -> Callable[..., logging.LogRecord]:
    current_context = current_context_reader()
    span_key = SPAN_KEY
    empty = state.empty

    def record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not state.active:
            return record
        try:
            span = current_context().get(span_key)
            if span is None:
                record.__dict__.update(empty)
                return record
            cached = getattr(span, _CACHE_ATTRIBUTE, None)
            fields = cached[1] if cached is not None and cached[0] is state else state.fields_for(span)
            record.__dict__.update(fields)
            if state.hook is not None and fields is not empty:
                state.hook(span, record)  # type: ignore[arg-type]
        except Exception:
            log_once("logging.correlation", "veil: adding trace fields to a log record failed", exc_info=True)
        return record

    return record_factory


# ------------------------------------------------------------------------------------------------ export


class _RecordExport:
    """Turns stdlib records into OTLP log records (and, opt-in, span events); runs on the logging thread."""

    def __init__(self, provider: LoggerProvider | None, export_level: int | None, event_level: int | None) -> None:
        self.provider = provider
        self.export_level = export_level
        self.event_level = event_level
        levels = [level for level in (export_level, event_level) if level is not None]
        self.threshold = min(levels) if levels else logging.CRITICAL + 1
        self._loggers: dict[str, Any] = {}
        self._local = threading.local()
        self._current_context = current_context_reader()
        self._guarded: list[str] = []
        if provider is not None:
            self._guard_flushes(provider)

    def _guard_flushes(self, provider: object) -> None:
        """Make `provider.force_flush()`/`shutdown()` export-only: they export on the calling thread, and an
        exporter logging there must not feed its own queue (a flush would never finish)."""
        local = self._local
        for name in ("force_flush", "shutdown"):
            original = getattr(provider, name, None)
            if original is None or name in vars(provider):
                continue

            def guarded(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
                previous = getattr(local, "busy", False)
                local.busy = True
                try:
                    return _original(*args, **kwargs)
                finally:
                    local.busy = previous

            try:
                setattr(provider, name, guarded)
            except (AttributeError, TypeError):
                continue
            self._guarded.append(name)

    def close(self) -> None:
        """Remove what `_guard_flushes` put on the provider."""
        for name in self._guarded:
            with contextlib.suppress(AttributeError, KeyError):
                delattr(self.provider, name)
        self._guarded.clear()

    def handle(self, record: logging.LogRecord) -> None:
        local = self._local
        if getattr(local, "busy", False):
            return  # a record logged while exporting one (by a processor, exporter or hook): never exported
        if record.name.partition(".")[0] in _UNEXPORTED_LOGGERS:
            return
        if threading.current_thread().name.startswith(_UNEXPORTED_THREAD_PREFIXES):
            return
        local.busy = True
        try:
            levelno = record.levelno
            if self.export_level is not None and levelno >= self.export_level:
                self._emit(record)
            if self.event_level is not None and levelno >= self.event_level:
                self._add_event(record)
        except Exception:
            log_once("logging.export", "veil: exporting a log record failed (the record was skipped)", exc_info=True)
        finally:
            local.busy = False

    def _logger(self, name: str) -> Any:
        logger = self._loggers.get(name)
        if logger is None:
            assert self.provider is not None
            logger = self.provider.get_logger(name)
            if len(self._loggers) < _LOGGER_CACHE_LIMIT:
                self._loggers[name] = logger
        return logger

    def _emit(self, record: logging.LogRecord) -> None:
        values = record.__dict__
        attributes: dict[str, Any] = {}
        for key in values.keys() - _RECORD_ATTRIBUTES:
            if isinstance(key, str) and not key.startswith("_"):
                attributes[key] = _attribute_value(values[key])
        attributes[CODE_FILE_PATH] = record.pathname
        attributes[CODE_FUNCTION_NAME] = record.funcName
        attributes[CODE_LINE_NUMBER] = record.lineno
        if record.exc_info:
            attributes.update(exception_attributes(record.exc_info))
        if record.stack_info:
            attributes[CODE_STACKTRACE] = record.stack_info
        self._logger(record.name).emit(
            timestamp=int(record.created * 1e9),
            context=self._current_context(),
            severity_number=_severity_number(record.levelno),
            severity_text=_severity_text(record.levelname),
            body=_message(record),
            attributes=attributes,
        )

    def _add_event(self, record: logging.LogRecord) -> None:
        span = self._current_context().get(SPAN_KEY)
        if not isinstance(span, trace.Span) or not span.is_recording():
            return
        attributes: dict[str, Any] = {
            EVENT_SEVERITY: _severity_text(record.levelname),
            EVENT_LOGGER: record.name,
            EVENT_MESSAGE: _message(record),
        }
        if record.exc_info:
            attributes.update(exception_attributes(record.exc_info))
        span.add_event(LOG_EVENT_NAME, attributes, timestamp=int(record.created * 1e9))


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        # The arguments do not fit the format; the handlers will report it. Export what there is.
        return f"{safe_text(record.msg)} {safe_text(record.args)}"


class _Patch:
    """`Logger.callHandlers`, replaced once per process and restored when nobody patched it after veil."""

    original: Callable[[logging.Logger, logging.LogRecord], None] | None = None
    export: _RecordExport | None = None
    output: LogOutputRedactor | None = None


def _call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    export = _Patch.export
    if export is not None and record.levelno >= export.threshold:
        export.handle(record)  # the raw record: exported copies are redacted on the export thread
    output = _Patch.output
    if output is not None:
        record = output.record(record)  # what every handler (last resort included) writes is redacted
    original = _Patch.original
    if original is not None:
        original(self, record)


def _install_call_handlers(export: _RecordExport | None, output: LogOutputRedactor | None) -> None:
    if _Patch.export is not None:
        _Patch.export.close()
    current = logging.Logger.__dict__.get("callHandlers")
    if current is not _call_handlers:
        _Patch.original = logging.Logger.callHandlers
        setattr(logging.Logger, "callHandlers", _call_handlers)  # noqa: B010 - mypy rejects a method assignment
    _Patch.export = export
    _Patch.output = output


def _remove_call_handlers() -> None:
    if _Patch.export is not None:
        _Patch.export.close()
    _Patch.export = None
    _Patch.output = None
    install_library_hooks(None)
    if logging.Logger.__dict__.get("callHandlers") is _call_handlers and _Patch.original is not None:
        setattr(logging.Logger, "callHandlers", _Patch.original)  # noqa: B010 - mypy rejects a method assignment
        _Patch.original = None
    # Otherwise someone wrapped callHandlers after veil: the wrapper stays in place as a pass-through.


def exporting_provider() -> LoggerProvider | None:
    """The provider stdlib records are exported to now, if veil exports them (VEIL_LOGS_EXPORT_LEVEL)."""
    export = _Patch.export
    if export is None or export.export_level is None:
        return None
    return export.provider


@contextlib.contextmanager
def records_to(provider: LoggerProvider, level: int) -> Iterator[None]:
    """While active, stdlib records at `level` and above go to `provider` as veil would export them.

    For the pytest capture when veil exports no logs (no logs exporter, or `veil.configure()` not called);
    span events configured before stay on. Undone on exit unless veil's logging was re-instrumented meanwhile.
    """
    previous = _Patch.export
    patched = logging.Logger.__dict__.get("callHandlers") is _call_handlers
    tap = _RecordExport(provider, level, previous.event_level if previous is not None else None)
    if previous is None:
        _install_call_handlers(tap, _Patch.output)  # log output redaction, if on, stays on
    else:
        _Patch.export = tap  # not _install_call_handlers: that would close `previous`, which comes back
    try:
        yield
    finally:
        tap.close()
        if _Patch.export is tap:
            if previous is None and not patched:
                _remove_call_handlers()
            else:
                _Patch.export = previous


# --------------------------------------------------------------------------------------- instrumentor


class LoggingInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Trace fields on every stdlib log record; OTLP export of records through veil's LoggerProvider.

    Keyword arguments of `instrument()` (each defaults to veil's settings):
    `set_logging_format` (OTEL_PYTHON_LOG_CORRELATION), `logging_format` (OTEL_PYTHON_LOG_FORMAT), `log_level`
    (OTEL_PYTHON_LOG_LEVEL, a name or number), `export_level` (VEIL_LOGS_EXPORT_LEVEL), `span_events`
    (VEIL_LOGS_SPAN_EVENTS: a level name, True for warning, False/'off'), `log_hook(span, record)` called for
    records created inside a span, `tracer_provider` (whose service.name the records carry),
    `logger_provider` (export there; by default through the provider `veil.configure()` built, while it is the
    global one and has a logs exporter: `veil.instrumentation.providers`) and `redact_output`
    (VEIL_REDACTION_LOG_OUTPUT).
    """

    _state: _Correlation | None = None
    _factory: Callable[..., logging.LogRecord] | None = None
    _previous_factory: Callable[..., logging.LogRecord] | None = None
    _format_handler: logging.Handler | None = None
    _previous_root_level: int | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        from veil import settings as settings_module

        settings = settings_module.current()
        service_name = service_name_of(kwargs.get("tracer_provider"))
        if not service_name and settings.service_name:
            service_name = settings.service_name
        state = _Correlation(service_name, kwargs.get("log_hook"))
        previous = logging.getLogRecordFactory()
        factory = _build_factory(previous, state)
        logging.setLogRecordFactory(factory)
        cls = LoggingInstrumentor
        cls._state, cls._factory, cls._previous_factory = state, factory, previous

        if kwargs.get("set_logging_format", settings.log_correlation):
            log_format = kwargs.get("logging_format") or settings.log_format or DEFAULT_LOGGING_FORMAT
            self._install_format_handler(log_format, _level(kwargs.get("log_level", settings.log_level)), state)

        provider = kwargs.get("logger_provider") or log_export_provider()
        export_level = _level(kwargs.get("export_level", settings.logs_export_level)) if provider else None
        event_level = _event_level(kwargs.get("span_events", settings.logs_span_events))
        export = None
        if export_level is not None or event_level is not None:
            export = _RecordExport(provider, export_level, event_level)
        output = _output_redactor(settings, kwargs.get("redact_output"))
        install_library_hooks(output.redactor if output is not None else None)
        if export is not None or output is not None:
            _install_call_handlers(export, output)

    def _install_format_handler(self, log_format: str, level: int, state: _Correlation) -> None:
        root = logging.getLogger()
        if root.handlers:
            log_once(
                "logging.format",
                "veil: OTEL_PYTHON_LOG_CORRELATION: the root logger already has handlers, so veil added none; "
                "add %%(trace_id)s and %%(span_id)s to their format instead",
                level=logging.INFO,
            )
            return
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(log_format, defaults=dict(state.empty)))
        cls = LoggingInstrumentor
        cls._format_handler, cls._previous_root_level = handler, root.level
        root.addHandler(handler)
        root.setLevel(level)

    def _uninstrument(self, **kwargs: Any) -> None:
        cls = LoggingInstrumentor
        _remove_call_handlers()
        if cls._state is not None:
            cls._state.active = False
        if cls._factory is not None and logging.getLogRecordFactory() is cls._factory:
            assert cls._previous_factory is not None
            logging.setLogRecordFactory(cls._previous_factory)
        # Otherwise a factory installed after veil's wraps it: veil's stays in its chain as a pass-through.
        if cls._format_handler is not None:
            root = logging.getLogger()
            if cls._format_handler in root.handlers:
                root.removeHandler(cls._format_handler)
                if cls._previous_root_level is not None:
                    root.setLevel(cls._previous_root_level)
        cls._state = cls._factory = cls._previous_factory = None
        cls._format_handler = cls._previous_root_level = None


def _output_redactor(settings: Any, requested: object) -> LogOutputRedactor | None:
    """The redactor of the process's own log output: on with redaction (VEIL_REDACTION_LOG_OUTPUT)."""
    enabled = settings.redaction_enabled and getattr(settings, "redaction_log_output", True)
    if requested is not None:
        enabled = bool(requested) and settings.redaction_enabled
    if not enabled:
        return None
    from veil.redaction import Redactor

    return LogOutputRedactor(Redactor.from_settings(settings), _RECORD_ATTRIBUTES, len(FIELD_NAMES))


def _level(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _LEVELS:
        return _LEVELS[value.strip().lower()]
    from veil.errors import ConfigurationError

    raise ConfigurationError("log level", value, ("debug", "info", "warning", "error", "critical"))


def _event_level(value: object) -> int | None:
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("off", "false")):
        return None
    if value is True:
        return logging.WARNING
    return _level(value)
