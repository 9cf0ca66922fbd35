"""The database client core: `DBTelemetry` (built once per instrumentation) and `Call` (one operation).

A call is one CLIENT span and one db.client.operation.duration measurement. While a call runs, the
`_INSIDE` context variable is set, so a layer below it (the DB-API driver under SQLAlchemy, PyMySQL's
executemany calling execute) steps aside instead of tracing the same operation twice; nothing is traced inside
`suppress_instrumentation()`.

Errors: the span gets status ERROR, error.type and db.response.status_code (see `semconv.error_of`); the
exception's message is not recorded (drivers echo the offending values in it) and the exception itself is
re-raised untouched by the caller.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.semconv._incubating.attributes.db_attributes import DB_QUERY_PARAMETER_TEMPLATE
from opentelemetry.semconv.metrics.db_metrics import DB_CLIENT_OPERATION_DURATION
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace import TracerProvider as APITracerProvider

from veil._cache import remember
from veil._guard import log_once
from veil._histograms import HistogramSpec
from veil._sdk import SUPPRESS_INSTRUMENTATION_KEY
from veil._version import __version__
from veil.instrumentation._db.semconv import Endpoint, Shape, Statement, error_attributes, shape_of
from veil.instrumentation._http.metrics import _histograms
from veil.instrumentation._http.semconv import CACHE_LIMIT

SCHEMA_URL: Final = Schemas.V1_44_0.value
DURATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
"""Advisory bucket boundaries (seconds) of db.client.operation.duration, from the conventions."""
_DURATION = HistogramSpec(
    DB_CLIENT_OPERATION_DURATION, "s", "Duration of database client operations.", DURATION_BUCKETS
)
_CLIENT: Final = SpanKind.CLIENT
_PARAMETER_MAX_LENGTH: Final = 256

_INSIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("veil.db.inside", default=False)
_T = TypeVar("_T")

OPTION_NAMES: Final = ("tracer_provider", "meter_provider", "sanitize_statements", "capture_parameters")
"""The `instrument()` options every database instrumentation accepts."""


def inside_database_call() -> bool:
    """True while a traced database operation runs in this context (the layers below step aside)."""
    return _INSIDE.get()


def suppressed() -> bool:
    """True inside `suppress_instrumentation()`."""
    current = otel_context.get_current()
    return bool(current) and bool(current.get(SUPPRESS_INSTRUMENTATION_KEY) or current.get("suppress_instrumentation"))


def tracing_enabled() -> bool:
    """False inside another traced database operation or inside `suppress_instrumentation()`."""
    return not _INSIDE.get() and not suppressed()


class DBTelemetry:
    """Tracer, duration histogram and options of one database instrumentation; holds nothing per call."""

    __slots__ = ("capture_parameters", "dup", "histogram", "library", "sanitize", "tracer")

    def __init__(self, library: str, instrumenting_module: str, options: Mapping[str, Any]) -> None:
        from veil import settings as veil_settings

        current = veil_settings.current()
        self.library = library
        self.dup = getattr(current, "semconv_database_mode", "stable") == "dup"
        sanitize = options.get("sanitize_statements")
        if sanitize is None:
            sanitize = library not in getattr(current, "db_raw_statements", ())
        self.sanitize = bool(sanitize)
        capture = options.get("capture_parameters")
        self.capture_parameters = bool(getattr(current, "db_capture_parameters", False) if capture is None else capture)
        tracer_provider: APITracerProvider | None = options.get("tracer_provider")
        meter_provider: MeterProvider | None = options.get("meter_provider")
        self.tracer = trace.get_tracer(instrumenting_module, __version__, tracer_provider, schema_url=SCHEMA_URL)
        meter = metrics.get_meter(instrumenting_module, __version__, meter_provider, schema_url=SCHEMA_URL)
        self.histogram = _histograms(meter, (_DURATION,))
        if not self.sanitize:
            from veil.redaction.statements import allow_raw_text

            allow_raw_text(instrumenting_module)

    def shape(
        self,
        endpoint: Endpoint,
        key: object,
        statement: Callable[[], Statement],
        batch_size: int | None = None,
    ) -> Shape:
        """The cached Shape of one statement (`key` identifies it; `statement()` builds it on a miss)."""
        batched = batch_size is not None and batch_size > 1
        cache_key = (key, batch_size) if batched else key
        shapes = endpoint.shapes
        shape = shapes.get(cache_key)
        if shape is None:
            # Statements that differ only in their literals share one Shape, found by their sanitized text.
            built = statement()
            text_key = (built.text, batch_size) if batched else built.text
            shape = shapes.get(text_key)
            if shape is None:
                shape = remember(shapes, text_key, shape_of(endpoint, built, batch_size, self.dup), CACHE_LIMIT)
            remember(shapes, cache_key, shape, CACHE_LIMIT)
        return shape

    def start(self, shape: Shape, parameters: object = None) -> Call:
        """Begin one operation: its CLIENT span (child of the current span) and its clock."""
        span = self.tracer.start_span(shape.name, kind=_CLIENT, attributes=shape.attributes)
        if parameters is not None and self.capture_parameters and span.is_recording():
            _record_parameters(span, parameters)
        return Call(self, span, shape)

    def connect(self, endpoint: Endpoint, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run a driver's connect call in a `connect` span: connection failures (refused, bad password) are
        recorded like failed operations, and the connection time is not hidden in the first query.
        """
        if not tracing_enabled():
            return function(*args, **kwargs)
        with self._connect_span(endpoint):
            return function(*args, **kwargs)

    async def connect_async(
        self, endpoint: Endpoint, function: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any
    ) -> _T:
        """`connect` for a coroutine function (an async driver's connect)."""
        if not tracing_enabled():
            return await function(*args, **kwargs)
        with self._connect_span(endpoint):
            return await function(*args, **kwargs)

    @contextmanager
    def _connect_span(self, endpoint: Endpoint) -> Iterator[None]:
        """The `connect` span around a driver's connect call; what runs inside is not traced again."""
        span = self.tracer.start_span("connect", kind=_CLIENT, attributes=endpoint.attributes)
        token = _INSIDE.set(True)
        try:
            yield
        except BaseException as error:
            _fail(span, error)
            raise
        finally:
            _INSIDE.reset(token)
            span.end()


def _record_parameters(span: Span, parameters: object) -> None:
    """db.query.parameter.<name or index> (opt-in); values pass through the export-side redactor like any
    attribute, and are cut to 256 characters.
    """
    try:
        if isinstance(parameters, Mapping):
            items = [(str(key), value) for key, value in parameters.items()]
        elif isinstance(parameters, (list, tuple)):
            items = [(str(index), value) for index, value in enumerate(parameters)]
        else:
            return
        for key, value in items:
            span.set_attribute(f"{DB_QUERY_PARAMETER_TEMPLATE}.{key}", str(value)[:_PARAMETER_MAX_LENGTH])
    except Exception:
        log_once("db.parameters", "veil: cannot record query parameters (they are left out)", exc_info=True)


def _fail(span: Span, error: BaseException) -> dict[str, Any] | None:
    try:
        attributes = error_attributes(error)
        span.set_attributes(attributes)
        span.set_status(Status(StatusCode.ERROR))
        return attributes
    except Exception:
        log_once("db.error", "veil: cannot record a database error (the exception is unchanged)", exc_info=True)
        return None


class Call:
    """One database operation in flight: `run` / `run_async` execute the driver call inside it."""

    __slots__ = ("_started", "shape", "span", "telemetry")

    def __init__(self, telemetry: DBTelemetry, span: Span, shape: Shape) -> None:
        self.telemetry = telemetry
        self.span = span
        self.shape = shape
        self._started = time.perf_counter()

    def end(self, error: BaseException | None = None) -> None:
        """End the span and record the duration (never raises)."""
        try:
            elapsed = time.perf_counter() - self._started
            metric_attributes = self.shape.metric_attributes
            if error is not None:
                failed = _fail(self.span, error)
                if failed:
                    metric_attributes = {**metric_attributes, **failed}
            self.span.end()
            self.telemetry.histogram.record(metric_attributes, (elapsed,), None)
        except Exception:
            log_once("db.end", "veil: cannot finish a database span", exc_info=True)

    def run(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        token = _INSIDE.set(True)
        try:
            result = function(*args, **kwargs)
        except BaseException as error:
            _INSIDE.reset(token)
            self.end(error)
            raise
        _INSIDE.reset(token)
        self.end()
        return result

    async def run_async(self, function: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
        token = _INSIDE.set(True)
        try:
            result = await function(*args, **kwargs)
        except BaseException as error:
            _INSIDE.reset(token)
            self.end(error)
            raise
        _INSIDE.reset(token)
        self.end()
        return result

    def enter(self) -> contextvars.Token[bool]:
        """Mark the operation as running (for event-based libraries that start and end it in two callbacks)."""
        return _INSIDE.set(True)

    @staticmethod
    def leave(token: contextvars.Token[bool]) -> None:
        try:
            _INSIDE.reset(token)
        except ValueError:  # reset from another context (an event fired elsewhere): clear it instead
            _INSIDE.set(False)
