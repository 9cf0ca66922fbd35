"""veil's pytest plugin: capture what veil would export during a test, and fail the test on leaks.

Installed with veil (entry point `pytest11`), it offers the `veil_capture` fixture::

    def test_login_never_leaks(client, veil_capture):
        client.post("/login", json={"user": "bob", "password": "canary-hunter2"})
        veil_capture.assert_no_leaks("canary-hunter2")

How it captures: on first use it adds one span processor to the global SDK `TracerProvider` and one log record
processor to the global SDK `LoggerProvider` (installing SDK providers first when none is set); each test's
capture receives the spans and log records that end while it is active and keeps them *redacted the way veil
exports them* (with the redactor from veil's current settings; unredacted when redaction is off). Standard-
library log records at VEIL_LOGS_EXPORT_LEVEL and above are captured whatever exporters are configured: when
veil exports no logs (no logs exporter, the usual state in tests), the fixture turns them into log records for
the test's duration exactly as the export would. Metrics readers cannot be added to an existing MeterProvider:
pass `veil_capture.metric_reader` to the MeterProvider your test builds, or hand `MetricsData` to
`veil_capture.add_metrics()`.

`assert_no_leaks(*planted)` fails, naming the category and where, when any captured span, event, link, log
record, resource or metric point still holds something a detector recognises, or contains one of the planted
strings anywhere (the strongest check: plant a unique value where a secret goes and prove it never leaves).
It also fails when it could only pass without looking: when nothing at all was captured (`allow_empty=True`
says that is expected) or when a request span started during the test has not ended yet
(`allow_in_flight=True`), since what it will export is unknown.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind

from veil import _sdk
from veil.redaction.engine import Redactor
from veil.redaction.export import ExportRedaction

__all__ = ["Leak", "LeakError", "TelemetryCapture", "veil_capture"]


@dataclass(frozen=True)
class Leak:
    """A secret still present in captured telemetry: where and of which category (never the value)."""

    location: str
    category: str

    def __str__(self) -> str:
        return f"{self.category} in {self.location}"


class LeakError(AssertionError):
    """Raised by `assert_no_leaks`; its message lists every leak by category and location."""


class TelemetryCapture:
    """Spans, log records and metrics exported during one test, as veil would export them."""

    def __init__(self, redactor: Redactor | None) -> None:
        self.redactor = redactor
        self._redaction = ExportRedaction(redactor) if redactor is not None else None
        self._detector = Redactor.default()
        self._lock = threading.Lock()
        self._spans: list[ReadableSpan] = []
        self._logs: list[ReadableLogRecord] = []
        self._metrics: list[MetricsData] = []
        self._open: dict[tuple[int, int], Span] = {}  # request spans started in the capture, not ended yet
        self.metric_reader = InMemoryMetricReader()

    # -- receiving

    def span_started(self, span: Span) -> None:
        if span.kind in _REQUEST_KINDS:
            with self._lock:
                self._open[_span_key(span)] = span

    def span_ended(self, span: ReadableSpan) -> None:
        with self._lock:
            self._open.pop(_span_key(span), None)
        self.add_span(span)

    def add_span(self, span: ReadableSpan) -> None:
        exported = self._redaction.span(span) if self._redaction is not None else span
        with self._lock:
            self._spans.append(exported)

    def add_log(self, record: ReadableLogRecord) -> None:
        exported = self._redaction.log(record) if self._redaction is not None else record
        with self._lock:
            self._logs.append(exported)

    def add_metrics(self, data: MetricsData) -> None:
        exported = self._redaction.metrics(data) if self._redaction is not None else data
        with self._lock:
            self._metrics.append(exported)

    # -- reading

    @property
    def spans(self) -> list[ReadableSpan]:
        with self._lock:
            return list(self._spans)

    @property
    def logs(self) -> list[ReadableLogRecord]:
        with self._lock:
            return list(self._logs)

    @property
    def metrics(self) -> list[MetricsData]:
        data = self.metric_reader.get_metrics_data() if self._reader_attached() else None
        with self._lock:
            captured = list(self._metrics)
        if data is not None:
            captured.append(self._redaction.metrics(data) if self._redaction is not None else data)
        return captured

    @property
    def in_flight(self) -> list[str]:
        """Names of the SERVER and CLIENT spans started during the test that have not ended (yet)."""
        with self._lock:
            return [span.name for span in self._open.values()]  # read now: a span is renamed once routed

    def _reader_attached(self) -> bool:
        return _sdk.reader_collect(self.metric_reader) is not None

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._logs.clear()
            self._metrics.clear()
            self._open.clear()

    def _nothing_captured(self) -> bool:
        if self.spans or self.logs:
            return False
        for data in self.metrics:
            for resource_metrics in data.resource_metrics:
                for scope in resource_metrics.scope_metrics:
                    if any(getattr(metric.data, "data_points", ()) for metric in scope.metrics):
                        return False
        return True

    # -- checking

    def leaks(self, *planted: str) -> list[Leak]:
        """Every leak in the captured telemetry (see the module documentation)."""
        leaks: list[Leak] = []
        for value_location, key, value in self._values():
            for category in self._detector.findings(key, value):
                leaks.append(Leak(value_location, category))
            if planted:
                text = value if isinstance(value, str) else repr(value)
                for secret in planted:
                    if secret and secret in text:
                        leaks.append(Leak(value_location, "planted"))
        return leaks

    def assert_no_leaks(self, *planted: str, allow_empty: bool = False, allow_in_flight: bool = False) -> None:
        """Fail (LeakError) when anything captured still holds a secret or one of the `planted` strings, or
        when the check could pass without looking: nothing captured at all (unless `allow_empty`), or request
        spans still open (unless `allow_in_flight`)."""
        leaks = self.leaks(*planted)
        if leaks:
            listed = "\n  ".join(str(leak) for leak in leaks[:50])
            more = f"\n  ... and {len(leaks) - 50} more" if len(leaks) > 50 else ""
            raise LeakError(f"{len(leaks)} leak(s) in exported telemetry:\n  {listed}{more}")
        open_requests = self.in_flight
        if open_requests and not allow_in_flight:
            names = ", ".join(repr(name) for name in open_requests[:10])
            raise LeakError(
                f"veil_capture: {len(open_requests)} request span(s) still in flight ({names}): what they will "
                "export is not known yet. Read or close the response (a streamed body ends its span when it is "
                "consumed), or pass allow_in_flight=True if that is expected."
            )
        if not allow_empty and self._nothing_captured():
            raise LeakError(
                "veil_capture captured nothing (no span, log record or metric point), so no leak could have been "
                "seen: is veil instrumenting the code under test (veil.configure() called before the app is "
                "built and before this fixture starts)? "
                "Pass allow_empty=True if this test is expected to export nothing."
            )

    def _values(self) -> Iterator[tuple[str, str | None, Any]]:
        for span in self.spans:
            where = f"span {span.name!r}"
            yield f"{where} name", None, span.name
            yield from _attributes(f"{where} attribute", span.attributes)
            if span.status.description:
                yield f"{where} status description", None, span.status.description
            for event in span.events:
                yield f"{where} event {event.name!r}", None, event.name
                yield from _attributes(f"{where} event {event.name!r} attribute", event.attributes)
            for link in span.links:
                yield from _attributes(f"{where} link attribute", link.attributes)
            yield from _attributes("resource attribute", span.resource.attributes)
        for index, record in enumerate(self.logs):
            where = f"log record #{index}"
            yield f"{where} body", None, record.log_record.body
            yield from _attributes(f"{where} attribute", record.log_record.attributes)
            yield from _attributes("resource attribute", record.resource.attributes)
        for data in self.metrics:
            for resource_metrics in data.resource_metrics:
                yield from _attributes("resource attribute", resource_metrics.resource.attributes)
                for scope in resource_metrics.scope_metrics:
                    for metric in scope.metrics:
                        for point in getattr(metric.data, "data_points", ()):
                            yield from _attributes(f"metric {metric.name!r} point attribute", point.attributes)


def _span_key(span: ReadableSpan) -> tuple[int, int]:
    context = span.get_span_context()
    return (context.trace_id, context.span_id) if context is not None else (0, id(span))


def _attributes(where: str, attributes: Mapping[str, Any] | None) -> Iterator[tuple[str, str | None, Any]]:
    for key, value in (attributes or {}).items():
        yield f"{where} {key!r}", key, value


# ------------------------------------------------------------------------------------------- dispatching


class _Dispatcher(SpanProcessor, LogRecordProcessor):
    """The one processor added per provider; forwards to whichever captures are active."""

    def __init__(self) -> None:
        self.active: list[TelemetryCapture] = []
        self._lock = threading.Lock()

    def targets(self) -> list[TelemetryCapture]:
        with self._lock:
            return list(self.active)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for capture in self.targets():
            capture.span_started(span)

    def on_end(self, span: ReadableSpan) -> None:
        for capture in self.targets():
            capture.span_ended(span)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        targets = self.targets()
        if not targets:
            return
        readable = ReadableLogRecord(
            log_record=log_record.log_record,
            resource=log_record.resource or Resource.get_empty(),
            instrumentation_scope=log_record.instrumentation_scope,
            limits=log_record.limits,
        )
        for capture in targets:
            capture.add_log(readable)

    def emit(self, log_record: ReadWriteLogRecord) -> None:  # SDK versions before on_emit
        self.on_emit(log_record)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_REQUEST_KINDS = frozenset({SpanKind.SERVER, SpanKind.CLIENT})
_dispatcher = _Dispatcher()
_attached: weakref.WeakSet[Any] = weakref.WeakSet()
_attach_lock = threading.Lock()
_capture_providers: dict[Resource, LoggerProvider] = {}


def _global_providers() -> tuple[TracerProvider, LoggerProvider]:
    tracer_provider = trace.get_tracer_provider()
    if not isinstance(tracer_provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        tracer_provider = trace.get_tracer_provider()
    logger_provider = get_logger_provider()
    if not isinstance(logger_provider, LoggerProvider):
        set_logger_provider(LoggerProvider())
        logger_provider = get_logger_provider()
    return tracer_provider, logger_provider  # type: ignore[return-value]


def attach() -> None:
    """Make sure the global SDK providers feed the dispatcher (idempotent)."""
    with _attach_lock:
        tracer_provider, logger_provider = _global_providers()
        for provider in (tracer_provider, logger_provider):
            _attach_to(provider)


def _attach_to(provider: object) -> None:
    if provider in _attached:
        return
    if isinstance(provider, TracerProvider):
        provider.add_span_processor(_dispatcher)
    elif isinstance(provider, LoggerProvider):
        provider.add_log_record_processor(_dispatcher)
    else:
        return
    _attached.add(provider)


@contextlib.contextmanager
def _standard_library_records() -> Iterator[None]:
    """Route stdlib log records to the dispatcher during one test, whether veil exports logs or not."""
    from veil.instrumentation import stdlib_logging as veil_logging

    exporting = veil_logging.exporting_provider()
    if exporting is not None:  # veil exports them already: listen on the provider they go to
        with _attach_lock:
            _attach_to(exporting)
        yield
        return
    with veil_logging.records_to(_capture_logger_provider(), _export_level()):
        yield


def _capture_logger_provider() -> LoggerProvider:
    """A LoggerProvider feeding only the dispatcher, with the resource of the global tracer provider."""
    resource = getattr(trace.get_tracer_provider(), "resource", None)
    if not isinstance(resource, Resource):
        resource = Resource.get_empty()
    with _attach_lock:
        provider = _capture_providers.get(resource)
        if provider is None:  # one per resource, kept: a provider per test would pile up
            provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
            provider.add_log_record_processor(_dispatcher)
            _capture_providers[resource] = provider
        return provider


def _export_level() -> int:
    try:
        from veil import settings as settings_module

        name = str(settings_module.current().logs_export_level)
    except Exception:
        name = "info"
    level = logging.getLevelName(name.upper())
    return level if isinstance(level, int) else logging.INFO


def _current_redactor() -> Redactor | None:
    try:
        from veil import settings as settings_module

        current = settings_module.current()
    except Exception:
        return Redactor.default()
    if not getattr(current, "redaction_enabled", True):
        return None
    return Redactor.from_settings(current)


@pytest.fixture
def veil_capture() -> Iterator[TelemetryCapture]:
    """Everything veil would export during this test (spans, logs; metrics via `metric_reader`)."""
    attach()
    capture = TelemetryCapture(_current_redactor())
    with _dispatcher._lock:
        _dispatcher.active.append(capture)
    try:
        with _standard_library_records():
            yield capture
    finally:
        with _dispatcher._lock:
            _dispatcher.active.remove(capture)
