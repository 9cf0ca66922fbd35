"""Histograms veil aggregates itself and hands to the metric readers of an SDK `MeterProvider` at collection.

The OpenTelemetry SDK spends about 15 µs on every synchronous histogram measurement (a `Measurement` object,
attribute hashing, view matching, an exemplar reservoir per reader). The per-request HTTP histograms are
recorded on every request with a handful of cached attribute sets, so veil aggregates them itself: a request
appends its measurements to a queue, which is folded into per-attribute-set buckets in batches (one bucket
search per histogram). When a reader collects, the data points are merged into the `MetricsData`
the SDK produced, under the same instrumentation scope, with the reader's temporality, the provider's exemplar
filter (an exemplar per bucket: the last sampled measurement, as the SDK's aligned-bucket reservoir keeps), the
SDK's cardinality limit and overflow series.

`recorder_for(meter, specs)` returns None unless the meter belongs to an SDK `MeterProvider` this module knows
how to join: no views, every reader with the default histogram aggregation, a built-in exemplar filter. The
caller then records through ordinary SDK instruments, so results are the same either way.
"""

from __future__ import annotations

import math
import threading
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from time import time_ns
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter
from opentelemetry.sdk.metrics import Meter as SDKMeter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.view import DefaultAggregation, ExplicitBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util.types import AttributeValue

from veil import _sdk
from veil._fork import after_fork
from veil._guard import log_once

CARDINALITY_LIMIT: Final = 2000
"""Attribute sets per histogram, as the SDK's default; later sets are folded into the overflow series."""

_OVERFLOW: Final[dict[str, AttributeValue]] = {"otel.metric.overflow": True}
_OVERFLOW_KEY: Final = (("otel.metric.overflow", True),)
_get_current_span = trace.get_current_span
_EXEMPLARS_OFF: Final = 0
_EXEMPLARS_SAMPLED: Final = 1
_EXEMPLARS_ALL: Final = 2

Attributes = Mapping[str, AttributeValue]
ContentKey = tuple[tuple[str, AttributeValue], ...]
# time, span id, trace id of a measurement kept as an exemplar; with its value once folded into a point
_ExemplarContext = tuple[int, int | None, int | None]
_Exemplar = tuple[float, int, int | None, int | None]
_Measurement = tuple[Attributes, Sequence[float | None], _ExemplarContext | None]

BATCH: Final = 128
"""Queued measurements that make `record` fold the queue into the rows."""


@dataclass(frozen=True)
class HistogramSpec:
    """One histogram instrument: its name, unit, description and explicit bucket boundaries."""

    name: str
    unit: str
    description: str
    boundaries: tuple[float, ...]


class _Point:
    """The aggregate of one histogram for one attribute set over some interval."""

    __slots__ = ("counts", "exemplars", "max", "min", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.sum: float = 0
        self.min = math.inf
        self.max = -math.inf
        self.exemplars: list[_Exemplar | None] | None = None

    def merge(self, other: _Point) -> None:
        self.counts = [mine + theirs for mine, theirs in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.exemplars is not None:
            if self.exemplars is None:
                self.exemplars = list(other.exemplars)
            else:
                for index, exemplar in enumerate(other.exemplars):
                    if exemplar is not None:
                        self.exemplars[index] = exemplar


class _Row:
    """The points of one attribute set (one per histogram of the recorder) recorded since the last collection."""

    __slots__ = ("attributes", "content", "points", "start")

    def __init__(self, attributes: Attributes, content: ContentKey, points: list[_Point], start: int) -> None:
        self.attributes = attributes  # held so that id(attributes) cannot be reused while this row exists
        self.content = content
        self.points = points
        self.start = start


class _Series:
    """What one reader has not yet been sent (delta) or has accumulated (cumulative) for one attribute set."""

    __slots__ = ("points", "start")

    def __init__(self, points: list[_Point | None], start: int) -> None:
        self.points = points
        self.start = start


class _ReaderState:
    __slots__ = ("cumulative", "last_collection", "series")

    def __init__(self, cumulative: bool, now: int) -> None:
        self.cumulative = cumulative
        self.last_collection = now
        self.series: dict[ContentKey, _Series] = {}


class Recorder:
    """The histograms of one instrumentation scope on one provider; `record` is the per-measurement cost.

    `record` only appends the measurement to a queue (atomic, no lock); every `BATCH` measurements, and before
    each collection, the queue is folded into the rows in one tight loop. That keeps the per-request work
    (and its cache footprint inside the request path) to a tuple and an append, at the same total CPU.
    """

    __slots__ = (
        "__weakref__",
        "_bounds",
        "_exemplars",
        "_interval_start",
        "_known",
        "_lock",
        "_pending",
        "_rows",
        "meter",
        "scope",
        "specs",
    )

    def __init__(self, meter: SDKMeter, specs: tuple[HistogramSpec, ...], exemplars: int) -> None:
        self.meter = meter
        self.scope: InstrumentationScope = _sdk.meter_scope(meter)
        self.specs = specs
        self._bounds = tuple(spec.boundaries for spec in specs)
        self._exemplars = exemplars
        self._lock = threading.Lock()
        self._pending: deque[_Measurement] = deque()
        self._rows: dict[int, _Row] = {}
        self._known: dict[ContentKey, Attributes] = {}
        self._interval_start = time_ns()

    def record(self, attributes: Attributes, values: Sequence[float | None], context: Context | None) -> None:
        """Add one measurement per histogram (`values` in `specs` order, None = not measured).

        `attributes` is expected to be a cached, never-mutated mapping: rows are found by its identity.
        """
        exemplar: _ExemplarContext | None = None
        mode = self._exemplars
        if mode:
            span_context = _get_current_span(context).get_span_context()
            if span_context.is_valid:
                if mode == _EXEMPLARS_ALL or span_context.trace_flags.sampled:
                    exemplar = (time_ns(), span_context.span_id, span_context.trace_id)
            elif mode == _EXEMPLARS_ALL:  # always_on keeps measurements made outside any span, unlinked
                exemplar = (time_ns(), None, None)
        pending = self._pending
        pending.append((attributes, values, exemplar))
        if len(pending) >= BATCH:
            with self._lock:
                self._fold()

    def _fold(self) -> None:
        """Aggregate the queued measurements into the rows (the caller holds the lock)."""
        popleft = self._pending.popleft
        rows = self._rows
        all_bounds = self._bounds
        while True:
            try:
                attributes, values, exemplar = popleft()
            except IndexError:
                return
            row = rows.get(id(attributes))
            if row is None or row.attributes is not attributes:
                row = self._new_row(attributes)
            for point, bounds, value in zip(row.points, all_bounds, values, strict=True):
                if value is None:
                    continue
                index = bisect_left(bounds, value)
                point.counts[index] += 1
                point.sum += value
                if value < point.min:  # noqa: PLR1730 - a comparison is cheaper than a min() call here
                    point.min = value
                if value > point.max:  # noqa: PLR1730
                    point.max = value
                if exemplar is not None:
                    slots = point.exemplars
                    if slots is None:
                        slots = point.exemplars = [None] * len(point.counts)
                    slots[index] = (value, *exemplar)

    def _new_row(self, attributes: Attributes) -> _Row:
        content: ContentKey = tuple(sorted(attributes.items()))
        if content not in self._known:
            if len(self._known) >= CARDINALITY_LIMIT:
                content = _OVERFLOW_KEY
            else:
                self._known[content] = dict(attributes)
        # the interval start precedes every measurement folded into this row: a valid cumulative start time
        row = _Row(attributes, content, [_Point(len(bounds) + 1) for bounds in self._bounds], self._interval_start)
        self._rows[id(attributes)] = row
        return row

    def take(self) -> list[_Row]:
        """The rows recorded since the last call (the hub merges them into every reader's state)."""
        with self._lock:
            self._fold()
            rows = list(self._rows.values())
            self._rows = {}
            self._interval_start = time_ns()
        return rows

    def exported_attributes(self, content: ContentKey) -> Attributes:
        return self._known.get(content, _OVERFLOW)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pending = deque()
        self._rows = {}
        self._interval_start = time_ns()


class _Hub:
    """Everything veil aggregates for one SDK provider (one measurement consumer), and its readers' views of it."""

    def __init__(self, consumer: Any) -> None:
        self._consumer = consumer
        self._lock = threading.Lock()
        self.recorders: dict[tuple[InstrumentationScope, tuple[HistogramSpec, ...]], Recorder] = {}
        self._states: dict[MetricReader, dict[Recorder, _ReaderState]] = {}
        self._wrapped: weakref.WeakSet[MetricReader] = weakref.WeakSet()  # the readers whose collect is wrapped

    # -- joining readers

    def join_readers(self) -> None:
        """Wrap the collect callback of every reader of the provider not joined yet."""
        for reader in _sdk.consumer_readers(self._consumer):
            if reader in self._wrapped:
                continue
            original = _sdk.reader_collect(reader)
            if original is None:
                continue
            self._wrapped.add(reader)
            _sdk.set_reader_collect(reader, self._collector(reader, original))

    def _collector(self, reader: MetricReader, original: Callable[..., Any]) -> Callable[..., MetricsData | None]:
        hub = weakref.ref(self)

        def collect(metric_reader: MetricReader, timeout_millis: float = 10_000) -> MetricsData | None:
            data: MetricsData | None = original(metric_reader, timeout_millis=timeout_millis)
            live = hub()
            if live is None:
                return data
            try:
                return live.merge_into(reader, data)
            except Exception:
                log_once(
                    "histograms.collect", "veil: could not add veil's HTTP histograms to a collection", exc_info=True
                )
                return data

        return collect

    # -- collection

    def _state(self, reader: MetricReader, recorder: Recorder, now: int) -> _ReaderState:
        states = self._states.setdefault(reader, {})
        state = states.get(recorder)
        if state is None:
            temporality = _sdk.histogram_temporality(reader)
            state = states[recorder] = _ReaderState(temporality is AggregationTemporality.CUMULATIVE, now)
        return state

    def merge_into(self, reader: MetricReader, data: MetricsData | None) -> MetricsData | None:
        """`data` with veil's histogram points for `reader` added."""
        now = time_ns()
        with self._lock:
            self.join_readers()
            readers = [known for known in self._wrapped if _sdk.reader_collect(known) is not None]
            by_scope: dict[InstrumentationScope, list[Metric]] = {}
            for recorder in list(self.recorders.values()):
                rows = recorder.take()
                if rows:
                    for other in readers:
                        _merge_rows(self._state(other, recorder, now), rows, len(recorder.specs))
                state = self._state(reader, recorder, now)
                metrics = _metrics_of(recorder, state, now) if _sdk.meter_enabled(recorder.meter) else []
                if not state.cumulative:
                    state.series.clear()
                state.last_collection = now
                if metrics:
                    by_scope.setdefault(recorder.scope, []).extend(metrics)
        if not by_scope:
            return data
        return _with_metrics(data, by_scope, _sdk.consumer_config(self._consumer).resource)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._states = {}
        for recorder in self.recorders.values():
            recorder.reset_after_fork()


def _merge_rows(state: _ReaderState, rows: list[_Row], width: int) -> None:
    series_of = state.series
    for row in rows:
        series = series_of.get(row.content)
        if series is None:
            series = series_of[row.content] = _Series([None] * width, row.start)
        for index, point in enumerate(row.points):
            if not any(point.counts):
                continue
            mine = series.points[index]
            if mine is None:  # a copy: the same row is merged into every reader's state
                mine = series.points[index] = _Point(len(point.counts))
            mine.merge(point)


def _metrics_of(recorder: Recorder, state: _ReaderState, now: int) -> list[Metric]:
    temporality = AggregationTemporality.CUMULATIVE if state.cumulative else AggregationTemporality.DELTA
    metrics: list[Metric] = []
    for index, spec in enumerate(recorder.specs):
        points: list[HistogramDataPoint] = []
        for content, series in state.series.items():
            point = series.points[index]
            if point is None:
                continue
            points.append(
                HistogramDataPoint(
                    attributes=dict(recorder.exported_attributes(content)),
                    start_time_unix_nano=series.start if state.cumulative else state.last_collection,
                    time_unix_nano=now,
                    count=sum(point.counts),
                    sum=point.sum,
                    bucket_counts=tuple(point.counts),
                    explicit_bounds=spec.boundaries,
                    min=point.min,
                    max=point.max,
                    exemplars=_exemplars_of(point),
                )
            )
        if points:
            metrics.append(
                Metric(
                    name=spec.name,
                    description=spec.description,
                    unit=spec.unit,
                    data=Histogram(data_points=points, aggregation_temporality=temporality),
                )
            )
    return metrics


def _exemplars_of(point: _Point) -> list[_sdk.Exemplar]:
    slots = point.exemplars
    if slots is None:
        return []
    point.exemplars = None  # exemplars are reported once, as the SDK's reservoirs reset on collection
    return [_sdk.Exemplar({}, *slot) for slot in slots if slot is not None]


def _with_metrics(
    data: MetricsData | None, by_scope: dict[InstrumentationScope, list[Metric]], resource: Resource
) -> MetricsData:
    if data is None or not data.resource_metrics:
        scopes = [ScopeMetrics(scope, metrics, scope.schema_url or "") for scope, metrics in by_scope.items()]
        return MetricsData([ResourceMetrics(resource, scopes, resource.schema_url or "")])
    first, *rest = data.resource_metrics
    merged: list[ScopeMetrics] = []
    for existing in first.scope_metrics:
        extra = by_scope.pop(existing.scope, None)
        merged.append(
            ScopeMetrics(existing.scope, [*existing.metrics, *extra], existing.schema_url) if extra else existing
        )
    merged.extend(ScopeMetrics(scope, metrics, scope.schema_url or "") for scope, metrics in by_scope.items())
    return MetricsData([ResourceMetrics(first.resource, merged, first.schema_url), *rest])


# ------------------------------------------------------------------------------------------- joining a provider

_HUB_ATTRIBUTE: Final = "_veil_histograms_hub"
"""The hub is kept on the SDK's measurement consumer itself: it lives exactly as long as the provider."""
_ALL_HUBS: weakref.WeakSet[_Hub] = weakref.WeakSet()  # only to reset them in a forked child
_HUBS_LOCK = threading.Lock()


def _exemplar_mode(sdk_config: Any) -> int | None:
    exemplar_filter = type(sdk_config.exemplar_filter)
    if exemplar_filter is TraceBasedExemplarFilter:
        return _EXEMPLARS_SAMPLED
    if exemplar_filter is AlwaysOnExemplarFilter:
        return _EXEMPLARS_ALL
    if exemplar_filter is AlwaysOffExemplarFilter:
        return _EXEMPLARS_OFF
    return None


def _default_histogram_aggregation(reader: MetricReader) -> bool:
    # the aggregations that honour the instruments' advisory bucket boundaries and record min and max; the
    # OTLP exporters ask for ExplicitBucketHistogramAggregation() without boundaries by default
    aggregation: object = _sdk.histogram_aggregation(reader)
    if type(aggregation) is ExplicitBucketHistogramAggregation:
        return _sdk.bucket_aggregation_is_default(aggregation)
    return type(aggregation) is DefaultAggregation


def recorder_for(meter: Meter, specs: Sequence[HistogramSpec]) -> Recorder | None:
    """A recorder for `specs` on `meter`'s provider, or None when veil cannot aggregate for that provider."""
    if type(meter) is not SDKMeter:
        return None
    try:
        consumer: Any = _sdk.measurement_consumer(meter)
        sdk_config = _sdk.consumer_config(consumer)
        readers = _sdk.consumer_readers(consumer)
        mode = _exemplar_mode(sdk_config)
        if mode is None or sdk_config.views or not readers:
            return None
        if not all(_default_histogram_aggregation(reader) for reader in readers):
            return None
        with _HUBS_LOCK:
            hub: _Hub | None = getattr(consumer, _HUB_ATTRIBUTE, None)
            if hub is None:
                hub = _Hub(consumer)
                setattr(consumer, _HUB_ATTRIBUTE, hub)
                _ALL_HUBS.add(hub)
            key = (_sdk.meter_scope(meter), tuple(specs))
            recorder = hub.recorders.get(key)
            if recorder is None:
                recorder = hub.recorders[key] = Recorder(meter, key[1], mode)
            with hub._lock:
                hub.join_readers()
        return recorder
    except Exception:  # an SDK whose internals differ: record through SDK instruments instead
        log_once("histograms.join", "veil: recording HTTP histograms through SDK instruments", exc_info=True)
        return None


def _reset_hubs_after_fork() -> None:
    global _HUBS_LOCK
    _HUBS_LOCK = threading.Lock()
    for hub in list(_ALL_HUBS):
        hub.reset_after_fork()


after_fork(_reset_hubs_after_fork)
