"""The exporters behind the names of veil._exporters (the registry), and their fork-safe construction.

Names: `otlp` (gRPC or HTTP/protobuf), `jaeger` (OTLP with Jaeger's defaults: Jaeger ingests OTLP natively on
4317/4318), `zipkin` (veil's Zipkin v2 JSON exporter), `console` (a readable trace tree), `prometheus` (a scrape
endpoint, veil.export.prometheus) and `none`. veil.export.pipeline wraps each in accounting and redaction.

Every network exporter is created lazily in the process that uses it (`PerProcess`), so a provider built
before a fork (gunicorn --preload, multiprocessing) never shares a gRPC channel or an HTTP connection pool
with its children: each child builds its own on its first export.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import Aggregation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from veil import _sdk
from veil._exporters import Signal
from veil._fork import FirstUse, after_fork
from veil.settings import Settings

_T = TypeVar("_T")
_R = TypeVar("_R")

# Jaeger's OTLP receivers listen on these ports by default (gRPC 4317, HTTP 4318), like any collector.
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"


class PerProcess(Generic[_T]):
    """One instance of an exporter per process, created on first use by `factory`.

    `use(work)` is how exporters are called: in each process the first use (building the instance, which imports
    the transport, and its first call, which imports what the transport loads lazily) holds off forks
    (`veil._fork.FirstUse`), so no child inherits an import lock taken half-way by this process's thread.
    """

    def __init__(self, factory: Callable[[], _T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._pid = -1
        self._instance: _T | None = None
        self._first_use = FirstUse()
        after_fork(self._renew_lock)

    def _renew_lock(self) -> None:
        # A parent thread holding the lock at fork time (building the exporter) must not leave the child's copy
        # locked forever.
        self._lock = threading.Lock()

    def get(self) -> _T:
        pid = os.getpid()
        instance = self._instance
        if instance is not None and self._pid == pid:
            return instance
        with self._lock:
            if self._instance is None or self._pid != pid:
                # After a fork the parent's instance (its channel, its sockets) is abandoned, never closed here.
                self._instance = self._factory()
                self._pid = pid
            return self._instance

    def use(self, work: Callable[[_T], _R]) -> _R:
        """`work(instance)`, the instance built first if needed; see the class docstring for forks."""
        return self._first_use.call(lambda: work(self.get()))

    def existing(self) -> _T | None:
        """The instance of this process, if one was created (shutdown must not create one)."""
        return self._instance if self._pid == os.getpid() else None


class ForkSafeSpanExporter(SpanExporter):
    """A span exporter built lazily once per process."""

    def __init__(self, factory: Callable[[], SpanExporter]) -> None:
        self._exporter = PerProcess(factory)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.use(lambda exporter: exporter.export(spans))

    def shutdown(self) -> None:
        exporter = self._exporter.existing()
        if exporter is not None:
            exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        exporter = self._exporter.existing()
        return True if exporter is None else exporter.force_flush(timeout_millis)


class ForkSafeLogRecordExporter(LogRecordExporter):
    """A log exporter built lazily once per process."""

    def __init__(self, factory: Callable[[], LogRecordExporter]) -> None:
        self._exporter = PerProcess(factory)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return self._exporter.use(lambda exporter: exporter.export(batch))

    def shutdown(self) -> None:
        exporter = self._exporter.existing()
        if exporter is not None:
            exporter.shutdown()  # type: ignore[no-untyped-call]  # untyped in the SDK

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        exporter = self._exporter.existing()
        return True if exporter is None else bool(exporter.force_flush(timeout_millis))


class ForkSafeMetricExporter(MetricExporter):
    """A metric exporter built lazily once per process; temporality and aggregation come from a probe."""

    def __init__(
        self,
        factory: Callable[[], MetricExporter],
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Aggregation] | None = None,
    ) -> None:
        super().__init__(preferred_temporality, preferred_aggregation)
        self._exporter = PerProcess(factory)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        return self._exporter.use(lambda exporter: exporter.export(metrics_data, timeout_millis=timeout_millis))

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        exporter = self._exporter.existing()
        return True if exporter is None else exporter.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        exporter = self._exporter.existing()
        if exporter is not None:
            exporter.shutdown(timeout_millis=timeout_millis)


# ---------------------------------------------------------------------------------------------- OTLP


def otlp_protocol(settings: Settings, signal: Signal) -> str:
    specific: str | None = getattr(settings, f"otlp_{signal}_protocol")
    return specific or settings.otlp_protocol


def otlp_endpoint(settings: Settings, signal: Signal) -> str:
    """The URL one signal is sent to, following the OTLP exporter specification.

    A per-signal endpoint is used as is; the base endpoint gets `/v1/<signal>` appended for HTTP; gRPC takes
    the base endpoint without a path.
    """
    protocol = otlp_protocol(settings, signal)
    specific: str | None = getattr(settings, f"otlp_{signal}_endpoint")
    if specific is not None:
        return specific
    if protocol == "grpc":
        return settings.otlp_endpoint or DEFAULT_GRPC_ENDPOINT
    base = (settings.otlp_endpoint or DEFAULT_HTTP_ENDPOINT).rstrip("/")
    return f"{base}/v1/{signal}"


def _otlp_target(settings: Settings, signal: Signal) -> tuple[str, str, dict[str, str] | None]:
    """The protocol, endpoint and headers of one signal's OTLP exporter."""
    headers = settings.otlp_signal_headers(signal) or None
    return otlp_protocol(settings, signal), otlp_endpoint(settings, signal), headers


def limit_sdk_export_logs() -> None:
    """Keep the SDK's per-retry export log lines to one per message and minute (veil reports losses)."""
    from veil.export.otlp import limit_sdk_export_logs as limit

    limit()


# ---------------------------------------------------------------------------------------------- factories
# What the registry (veil._exporters) builds for each name; the pipeline (veil.export.pipeline) wraps it.


def otlp_span_exporter(settings: Settings) -> SpanExporter:
    """The SDK's OTLP span exporter, with veil's retry budget and response reading, built once per process."""
    from veil.export import otlp

    return ForkSafeSpanExporter(lambda: otlp.build_exporter(settings, "traces", *_otlp_target(settings, "traces")))


def _reuse_once(first: _T, factory: Callable[[], _T]) -> Callable[[], _T]:
    """A factory that hands out `first` once in the process that built it, then builds anew."""
    pid = os.getpid()
    pending = [first]

    def build() -> _T:
        if pending and os.getpid() == pid:
            return pending.pop()
        return factory()

    return build


def otlp_metric_exporter(settings: Settings) -> MetricExporter:
    """The SDK's OTLP metric exporter, built once per process; its temporality and aggregation come from a
    first instance built at once (and used by this process)."""
    from veil.export import otlp

    def build() -> MetricExporter:
        return otlp.build_exporter(settings, "metrics", *_otlp_target(settings, "metrics"))

    probe = build()
    return ForkSafeMetricExporter(
        _reuse_once(probe, build),
        _sdk.preferred_temporality(probe),
        _sdk.preferred_aggregation(probe),
    )


def otlp_log_exporter(settings: Settings) -> LogRecordExporter:
    """The SDK's OTLP log exporter, with veil's retry budget and response reading, built once per process."""
    from veil.export import otlp

    return ForkSafeLogRecordExporter(lambda: otlp.build_exporter(settings, "logs", *_otlp_target(settings, "logs")))


def zipkin_span_exporter(settings: Settings) -> SpanExporter:
    """veil's Zipkin v2 JSON exporter, built once per process."""
    from veil.export.zipkin import ZipkinExporter

    return ForkSafeSpanExporter(
        lambda: ZipkinExporter(settings.zipkin_endpoint, timeout=settings.zipkin_timeout_millis / 1000.0)
    )
