"""The console metric exporter: a compact summary at each collection, one line per metric data point."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, TextIO

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.metrics.view import Aggregation
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME

from veil.export.console._terminal import (
    _clock,
    _render_and_write,
    _resolve,
    _style_for,
    _text,
    _unicode_ok,
    _value,
)

__all__ = ["ConsoleMetricExporter"]

_MAX_METRIC_LINES = 500


def _number(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:.6g}"


def _quantile(point: HistogramDataPoint, quantile: float) -> float | None:
    """An upper bound of the quantile: the upper edge of its bucket (the maximum for the last one)."""
    if not point.count or not point.bucket_counts:
        return None
    rank = quantile * point.count
    seen = 0
    for index, bucket in enumerate(point.bucket_counts):
        seen += bucket
        if seen >= rank and bucket:
            if index < len(point.explicit_bounds):
                bound = float(point.explicit_bounds[index])
                return min(bound, point.max) if math.isfinite(point.max) else bound
            return float(point.max)
    return None


class ConsoleMetricExporter(MetricExporter):
    """Prints a compact summary at each collection: one line per metric data point.

    Sums and gauges show their value; histograms show count, sum, min, max and upper bounds of p50 and p99
    taken from the buckets. Temporality and aggregation preferences go to the SDK unchanged (its defaults:
    cumulative, default aggregations). At most 500 lines are printed per collection.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        color: bool | None = None,
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Aggregation] | None = None,
    ) -> None:
        style = _style_for(stream, color)
        super().__init__(preferred_temporality=preferred_temporality, preferred_aggregation=preferred_aggregation)
        self._stream = stream
        self._style = style
        self._le = "≤" if _unicode_ok(_resolve(stream)) else "<="
        self._shutdown = False

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if self._shutdown:
            return MetricExportResult.FAILURE
        ok = _render_and_write(self._stream, lambda: self._render(metrics_data), "export.console.metrics")
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._shutdown = True

    def _render(self, metrics_data: MetricsData) -> str:
        style = self._style
        lines: list[str] = []
        shown = skipped = 0
        for resource_metrics in metrics_data.resource_metrics:
            service = resource_metrics.resource.attributes.get(SERVICE_NAME, "unknown_service")
            header = f"{style('header', 'metrics')}  {style('magenta', _text(str(service), 60))}"
            lines.append(f"{header}  {style('dim', _clock(time.time_ns()))}")
            before = len(lines)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    unit = f" [{_text(metric.unit, 30)}]" if metric.unit else ""
                    name = style("bold", _text(metric.name, 120)) + style("dim", unit)
                    for point_line in self._points(metric.data):
                        if shown >= _MAX_METRIC_LINES:
                            skipped += 1
                            continue
                        shown += 1
                        lines.append(f"  {name}  {point_line}")
            if len(lines) == before:
                lines.pop()  # nothing to show for this resource
        if skipped:
            lines.append(style("dim", f"  ... {skipped} more data points not shown"))
        return "\n".join(lines) + "\n" if lines else ""

    def _points(self, data: object) -> Iterable[str]:
        style = self._style
        if isinstance(data, (Sum, Gauge)):
            kind = ("counter" if data.is_monotonic else "updown") if isinstance(data, Sum) else "gauge"
            for number in data.data_points:
                value = style("yellow", _number(number.value))
                yield f"{style('dim', kind)}  {self._attributes(number)}{value}"
        elif isinstance(data, Histogram):
            for point in data.data_points:
                summary = [f"count={point.count}", f"sum={_number(point.sum)}"]
                if point.count:
                    summary += [f"min={_number(point.min)}", f"max={_number(point.max)}"]
                    for label, quantile in (("p50", 0.5), ("p99", 0.99)):
                        bound = _quantile(point, quantile)
                        if bound is not None:
                            summary.append(f"{label}{self._le}{_number(bound)}")
                values = style("yellow", " ".join(summary))
                yield f"{style('dim', 'histogram')}  {self._attributes(point)}{values}"
        else:  # exponential histogram, or a type added later: count, sum, min, max when present
            for point in getattr(data, "data_points", ()):
                fields = [
                    f"{name}={_number(getattr(point, name))}"
                    for name in ("count", "sum", "min", "max")
                    if isinstance(getattr(point, name, None), (int, float))
                ]
                yield f"{style('dim', type(data).__name__.lower())}  {self._attributes(point)}" + style(
                    "yellow", " ".join(fields)
                )

    def _attributes(self, point: NumberDataPoint | HistogramDataPoint | Any) -> str:
        attributes = point.attributes or {}
        if not attributes:
            return ""
        inner = " ".join(
            f"{self._style('dim', _text(str(key), 60) + '=')}{_value(value)}" for key, value in attributes.items()
        )
        return "{" + inner + "}  "
