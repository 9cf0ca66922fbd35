"""The SDK's OTLP exporters, built with a bounded retry budget and with their responses read.

What the SDK exporters do on their own (opentelemetry-exporter-otlp-proto-http / -grpc 1.45, read from the
source): every export has one deadline, `timeout` seconds after it starts. Within it they retry 429, 502,
503, 504 and connection errors over HTTP, and UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ABORTED,
CANCELLED, OUT_OF_RANGE and DATA_LOSS over gRPC, at most 6 attempts, backing off 1, 2, 4, 8, 16 s with
+-20 % jitter, or as long as the server's `Retry-After` header / `google.rpc.RetryInfo` asks. A wait that
would end past the deadline is not started: the export fails at once. Each attempt's own timeout is what
is left of the deadline, so a black-holing collector costs one attempt of the whole budget. Shutting the
exporter down interrupts a backoff wait.

So the total time one batch can take is the exporter timeout, and veil sets it to the smaller of
OTEL_EXPORTER_OTLP_TIMEOUT and the processor's export timeout (OTEL_BSP_EXPORT_TIMEOUT,
OTEL_BLRP_EXPORT_TIMEOUT, OTEL_METRIC_EXPORT_TIMEOUT), which the SDK otherwise leaves unused.

What they do not do: read the response of a successful export. An OTLP backend may accept a request
while refusing some of its items (a partial success with `rejected_spans` / `rejected_log_records` /
`rejected_data_points` and an error message). veil reads it: over HTTP with a response hook on the
exporter's `requests` session, over gRPC by wrapping the exporter's stub, and books the refused items as
rejected (`veil.export.accounting`).

What they do at exit: the final flush retries a refused connection or a failed name lookup with backoff like
any transient error, so exit with a dead collector waited the whole shutdown bound. While veil shuts down
(`shutting_down()`), an export that cannot connect because the connection is refused or the name does not
resolve fails at once, without backoff; a black-holing endpoint still costs at most the shutdown bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import urlsplit

from veil import _sdk
from veil._exporters import Signal
from veil._fork import after_fork
from veil._guard import OncePerInterval, log_once
from veil.export.accounting import record_failure_cause, record_rejected
from veil.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.trace.export import SpanExporter

_REJECTED_FIELD: dict[str, str] = {
    "traces": "rejected_spans",
    "metrics": "rejected_data_points",
    "logs": "rejected_log_records",
}


def _response_type(signal: Signal) -> Any:
    if signal == "traces":
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        return ExportTraceServiceResponse
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

        return ExportMetricsServiceResponse
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    return ExportLogsServiceResponse


def read_partial_success(signal: Signal, response: Any) -> None:
    """Book the items an OTLP response says were rejected (no-op for a full success)."""
    if not response.HasField("partial_success"):
        return
    partial = response.partial_success
    rejected = int(getattr(partial, _REJECTED_FIELD[signal], 0))
    message = str(partial.error_message)
    if rejected or message:
        record_rejected(rejected, message)
        log_once(
            f"otlp.partial_success.{signal}",
            "veil: the OTLP backend rejected %d %s item(s) of an export: %s",
            rejected,
            signal,
            message or "(no message)",
        )


# ------------------------------------------------------------------------------------ dead at shutdown

_shutting_down = 0
_shutting_down_lock = threading.Lock()
# Every OTLP exporter veil built, with a probe: whether its last attempt found the collector unreachable.
_built: list[tuple[weakref.ref[Any], Callable[[Any], bool]]] = []


def _interrupt_backoff(exporter: Any) -> None:
    """Wake an export of `exporter` waiting out a backoff, so it fails now: sets the SDK's own shutdown events
    (`veil._sdk.exporter_shutdown_events`), which the SDK sets itself when the exporter shuts down. Without them
    (another SDK version) the wait runs its course."""
    for event in _sdk.exporter_shutdown_events(exporter):
        event.set()


@contextlib.contextmanager
def shutting_down() -> Iterator[None]:
    """While in this block, an export to an endpoint that refuses connections or does not resolve fails at once,
    and exports backing off after such a failure stop waiting."""
    global _shutting_down
    with _shutting_down_lock:
        _shutting_down += 1
        built = [(reference(), probe) for reference, probe in _built]
        _built[:] = [(reference, probe) for reference, probe in _built if reference() is not None]
    for exporter, unreachable in built:
        if exporter is not None and unreachable(exporter):
            _interrupt_backoff(exporter)
    try:
        yield
    finally:
        with _shutting_down_lock:
            _shutting_down -= 1


def _unreachable(error: BaseException) -> bool:
    """Whether `error` (or what it wraps) is a refused connection or a failed name lookup."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen or len(seen) > 32:
            continue
        seen.add(id(current))
        if isinstance(current, (ConnectionRefusedError, socket.gaierror)):
            return True
        pending.extend((current.__cause__, current.__context__, getattr(current, "reason", None), *current.args))
    return False


def _grpc_unreachable(details: str) -> bool:
    """gRPC reports both as UNAVAILABLE; only the details tell them from a server that answered UNAVAILABLE."""
    lowered = details.lower()
    return any(words in lowered for words in ("connection refused", "dns resolution failed", "errors resolving"))


# ---------------------------------------------------------------------------------------------- HTTP


def _http_session(signal: Signal) -> Any:
    """A requests session whose response hook reads partial successes and failure statuses."""
    import requests
    from google.protobuf import json_format  # type: ignore[import-untyped]
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    response_type = _response_type(signal)

    def hook(response: requests.Response, *args: object, **kwargs: object) -> requests.Response:
        try:
            status = response.status_code
            if 200 <= status < 300:
                body = response.content
                if body:
                    message = response_type()
                    if "json" in (response.headers.get("Content-Type") or ""):
                        json_format.ParseDict(json.loads(body), message, ignore_unknown_fields=True)
                    else:
                        message.ParseFromString(body)
                    read_partial_success(signal, message)
            else:
                record_failure_cause(str(status))
        except (DecodeError, ValueError, json_format.ParseError):
            log_once(f"otlp.response.{signal}", "veil: could not decode an OTLP %s response body", signal)
        return response

    class Session(requests.Session):
        unreachable = False  # the last attempt was refused, or the name did not resolve

        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            try:
                response = super().send(request, **kwargs)
            except requests.exceptions.ConnectionError as error:
                self.unreachable = _unreachable(error)
                if _shutting_down and self.unreachable:
                    # Not a ConnectionError, so the SDK fails the export instead of retrying with backoff.
                    raise requests.exceptions.RequestException(f"collector unreachable at shutdown: {error}") from error
                raise
            self.unreachable = False
            return response

    session = Session()
    session.hooks["response"].append(hook)
    return session


def _credential_provider_configured(signal: Signal) -> bool:
    """The SDK loads a session from an entry point when these are set; veil then leaves the session alone."""
    return bool(
        os.environ.get("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER")
        or os.environ.get(f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{signal.upper()}_CREDENTIAL_PROVIDER")
    )


# ---------------------------------------------------------------------------------------------- gRPC


class _ReadingStub:
    """Wraps a generated OTLP stub: reads the response of `Export`, notes the code of a failed call and whether
    the collector was unreachable (refused, or its name did not resolve)."""

    def __init__(self, stub: Any, signal: Signal) -> None:
        self._stub = stub
        self._signal: Signal = signal
        self.unreachable = False

    def Export(self, *args: Any, **kwargs: Any) -> Any:
        import grpc

        try:
            response = self._stub.Export(*args, **kwargs)
        except grpc.RpcError as error:
            code = error.code() if callable(getattr(error, "code", None)) else None
            record_failure_cause(code.name if code is not None else type(error).__qualname__)
            details = error.details() if callable(getattr(error, "details", None)) else None
            self.unreachable = code == grpc.StatusCode.UNAVAILABLE and _grpc_unreachable(str(details or ""))
            raise
        if hasattr(response, "partial_success"):
            read_partial_success(self._signal, response)
        return response


_grpc_classes: dict[str, type[Any]] = {}
_grpc_lock = threading.Lock()


def _grpc_class(signal: Signal) -> type[Any]:
    """The SDK's gRPC exporter for `signal`, subclassed so its stub (also after a reconnect) is wrapped."""
    with _grpc_lock:
        cached = _grpc_classes.get(signal)
        if cached is not None:
            return cached
        base: type[Any]
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            base = OTLPSpanExporter
        elif signal == "metrics":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            base = OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

            base = OTLPLogExporter

        def before_connect(exporter: Any) -> None:
            # The SDK reconnects after the first UNAVAILABLE of an export, before it backs off. At shutdown, when
            # the collector was unreachable, end the backoff at once (the SDK's own shutdown event).
            if _shutting_down and _grpc_stub_unreachable(exporter):
                _interrupt_backoff(exporter)

        # Without the SDK's reconnect hook, `base` itself: partial successes over gRPC go unread (still exported).
        reading = _sdk.grpc_exporter_wrapping_stub(base, before_connect, lambda stub: _ReadingStub(stub, signal))
        _grpc_classes[signal] = reading
        return reading


def _grpc_stub_unreachable(exporter: Any) -> bool:
    stub = _sdk.grpc_stub(exporter)
    return isinstance(stub, _ReadingStub) and stub.unreachable


# ------------------------------------------------------------------------------------------- builder


def export_timeout_seconds(settings: Settings, signal: Signal) -> float:
    """The whole retry budget of one export: OTLP timeout, capped by the processor's export timeout."""
    processor_timeout = {
        "traces": settings.bsp_export_timeout_millis,
        "logs": settings.blrp_export_timeout_millis,
        "metrics": settings.metric_export_timeout_millis,
    }[signal]
    return min(settings.otlp_signal_timeout_millis(signal), processor_timeout) / 1000.0


@overload
def build_exporter(
    settings: Settings, signal: Literal["traces"], protocol: str, endpoint: str, headers: dict[str, str] | None
) -> SpanExporter: ...
@overload
def build_exporter(
    settings: Settings, signal: Literal["metrics"], protocol: str, endpoint: str, headers: dict[str, str] | None
) -> MetricExporter: ...
@overload
def build_exporter(
    settings: Settings, signal: Literal["logs"], protocol: str, endpoint: str, headers: dict[str, str] | None
) -> LogRecordExporter: ...
def build_exporter(
    settings: Settings, signal: Signal, protocol: str, endpoint: str, headers: dict[str, str] | None
) -> SpanExporter | MetricExporter | LogRecordExporter:
    """Build the SDK's OTLP exporter for one signal (imports only the transport that is used)."""
    timeout = export_timeout_seconds(settings, signal)
    gzip = settings.otlp_signal_compression(signal) == "gzip"
    if protocol == "grpc":
        from grpc import Compression as GrpcCompression

        grpc_compression = GrpcCompression.Gzip if gzip else GrpcCompression.NoCompression
        insecure = urlsplit(endpoint).scheme == "http"
        exporter_class = _grpc_class(signal)
        grpc_exporter: SpanExporter | MetricExporter | LogRecordExporter = exporter_class(
            endpoint, insecure, None, headers, timeout, grpc_compression
        )
        _track(grpc_exporter, _grpc_stub_unreachable)
        return grpc_exporter

    from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression

    http_compression = HttpCompression.Gzip if gzip else HttpCompression.NoCompression
    session = None if _credential_provider_configured(signal) else _http_session(signal)
    arguments: dict[str, Any] = {
        "headers": headers,
        "timeout": timeout,
        "compression": http_compression,
        "session": session,
    }
    exporter: SpanExporter | MetricExporter | LogRecordExporter
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

        exporter = HttpSpanExporter(endpoint, **arguments)
    elif signal == "metrics":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )

        exporter = HttpMetricExporter(endpoint, **arguments)
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (
            OTLPLogExporter as HttpLogRecordExporter,
        )

        exporter = HttpLogRecordExporter(endpoint, **arguments)
    if session is not None:
        _track(exporter, lambda _exporter: bool(getattr(session, "unreachable", False)))
    return exporter


def _track(exporter: object, unreachable: Callable[[Any], bool]) -> None:
    with _shutting_down_lock:
        _built.append((weakref.ref(exporter), unreachable))


def exporter_type(signal: Signal, protocol: str) -> str:
    """The `otel.component.type` of the OTLP exporter for one signal and protocol."""
    from opentelemetry.semconv._incubating.attributes.otel_attributes import OtelComponentTypeValues as Types

    grpc = protocol == "grpc"
    if signal == "traces":
        value = (Types.OTLP_GRPC_SPAN_EXPORTER if grpc else Types.OTLP_HTTP_SPAN_EXPORTER).value
    elif signal == "metrics":
        value = (Types.OTLP_GRPC_METRIC_EXPORTER if grpc else Types.OTLP_HTTP_METRIC_EXPORTER).value
    else:
        value = (Types.OTLP_GRPC_LOG_EXPORTER if grpc else Types.OTLP_HTTP_LOG_EXPORTER).value
    return str(value)


# ------------------------------------------------------------------------------ SDK log rate limiting

# The SDK logs every retry of every batch (and every queue-full drop); during a long outage that is a line
# per batch per attempt. veil reports losses itself in one line a minute, so these loggers keep at most one
# record per message and minute.
_SDK_EXPORT_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    *_sdk.SDK_INTERNAL_EXPORT_LOGGERS,
)


class _OncePerMinute(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._limiter = OncePerInterval(60.0, limit=257)  # at most 257 (logger, message) pairs remembered

    def filter(self, record: logging.LogRecord) -> bool:
        return self._limiter.first((record.name, record.msg))


_filter = _OncePerMinute()


def _fresh_lock_in_child() -> None:
    # A fork taken while the export thread held it would leave the child's copy locked forever.
    global _grpc_lock
    _grpc_lock = threading.Lock()


after_fork(_fresh_lock_in_child)


def limit_sdk_export_logs() -> None:
    """Install the once-per-minute filter on the SDK's export loggers (idempotent)."""
    for name in _SDK_EXPORT_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
