"""veil's own histogram aggregation (`veil._histograms`) against the SDK's: same points, same exemplars rules."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics import Histogram as SDKHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from tests.fixtures.otlp import OTLPReceiver
from veil._histograms import CARDINALITY_LIMIT, HistogramSpec, Recorder, recorder_for
from veil.instrumentation._http.metrics import (
    DURATION_BUCKETS,
    request_metrics,
)
from veil.instrumentation.wsgi import VeilWSGIMiddleware

SPEC = HistogramSpec("test.duration", "s", "A test duration.", DURATION_BUCKETS)
SIZE = HistogramSpec("test.size", "By", "A test size.", (0.0, 10.0, 100.0))
VALUES = [0.001, 0.005, 0.0051, 0.3, 0.3, 12.0, 0.07, 0.0]


def points(data: MetricsData | None, name: str) -> list[HistogramDataPoint]:
    if data is None:  # nothing at all to report
        return []
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def comparable(point: HistogramDataPoint) -> tuple[Any, ...]:
    return (
        dict(point.attributes or {}),
        point.count,
        point.sum,
        tuple(point.bucket_counts),
        tuple(point.explicit_bounds),
        point.min,
        point.max,
    )


def fast_and_sdk(
    temporality: AggregationTemporality = AggregationTemporality.CUMULATIVE, **provider: Any
) -> tuple[Recorder, SDKHistogram, InMemoryMetricReader, InMemoryMetricReader]:
    """A veil recorder and an SDK histogram, each on its own provider with one in-memory reader."""
    preferred = {SDKHistogram: temporality}
    fast_reader = InMemoryMetricReader(preferred_temporality=preferred)  # type: ignore[dict-item]
    sdk_reader = InMemoryMetricReader(preferred_temporality=preferred)  # type: ignore[dict-item]
    fast_meter = MeterProvider(metric_readers=[fast_reader], **provider).get_meter("scope", "1.0")
    sdk_meter = MeterProvider(metric_readers=[sdk_reader], **provider).get_meter("scope", "1.0")
    recorder = recorder_for(fast_meter, [SPEC])
    assert recorder is not None
    histogram = sdk_meter.create_histogram(
        SPEC.name, unit=SPEC.unit, description=SPEC.description, explicit_bucket_boundaries_advisory=SPEC.boundaries
    )
    return recorder, histogram, fast_reader, sdk_reader  # type: ignore[return-value]


@pytest.fixture
def sampled_context() -> Iterator[Context]:
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("request") as span:
        yield trace.set_span_in_context(span)


@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA])
def test_points_equal_the_sdk_histograms_over_several_collections(temporality: AggregationTemporality) -> None:
    recorder, histogram, fast_reader, sdk_reader = fast_and_sdk(temporality)
    first = {"http.route": "/a", "http.response.status_code": 200}
    second = {"http.route": "/b", "http.response.status_code": 500}
    for rounds in (VALUES, VALUES[:3], []):
        for index, value in enumerate(rounds):
            attributes = first if index % 3 else second
            recorder.record(attributes, (value,), None)
            histogram.record(value, attributes)
        fast = sorted(map(comparable, points(fast_reader.get_metrics_data(), SPEC.name)), key=repr)
        sdk = sorted(map(comparable, points(sdk_reader.get_metrics_data(), SPEC.name)), key=repr)
        assert fast == sdk
    if temporality is AggregationTemporality.DELTA:
        assert fast == []  # nothing recorded in the last interval: no points, as the SDK


def test_metric_identity_scope_and_temporality_match_the_sdk() -> None:
    recorder, histogram, fast_reader, sdk_reader = fast_and_sdk(resource=Resource.create({"service.name": "svc"}))
    recorder.record({"a": 1}, (0.2,), None)
    histogram.record(0.2, {"a": 1})
    fast_data, sdk_data = fast_reader.get_metrics_data(), sdk_reader.get_metrics_data()
    assert fast_data is not None and sdk_data is not None
    fast_scope = fast_data.resource_metrics[0].scope_metrics[0]
    sdk_scope = sdk_data.resource_metrics[0].scope_metrics[0]
    assert fast_scope.scope == sdk_scope.scope
    assert fast_data.resource_metrics[0].resource.attributes["service.name"] == "svc"
    fast_metric, sdk_metric = fast_scope.metrics[0], sdk_scope.metrics[0]
    assert (fast_metric.name, fast_metric.unit, fast_metric.description) == (
        sdk_metric.name,
        sdk_metric.unit,
        sdk_metric.description,
    )
    assert fast_metric.data.aggregation_temporality == sdk_metric.data.aggregation_temporality  # type: ignore[union-attr]
    point = points(fast_data, SPEC.name)[0]
    assert point.start_time_unix_nano <= point.time_unix_nano


def test_delta_intervals_are_contiguous_and_cumulative_start_is_fixed() -> None:
    recorder, _, delta_reader, _ = fast_and_sdk(AggregationTemporality.DELTA)
    recorder.record({"a": 1}, (0.2,), None)
    first = points(delta_reader.get_metrics_data(), SPEC.name)[0]
    recorder.record({"a": 1}, (0.2,), None)
    second = points(delta_reader.get_metrics_data(), SPEC.name)[0]
    assert second.start_time_unix_nano == first.time_unix_nano
    assert (first.count, second.count) == (1, 1)

    recorder, _, cumulative_reader, _ = fast_and_sdk()
    recorder.record({"a": 1}, (0.2,), None)
    first = points(cumulative_reader.get_metrics_data(), SPEC.name)[0]
    recorder.record({"a": 1}, (0.2,), None)
    second = points(cumulative_reader.get_metrics_data(), SPEC.name)[0]
    assert second.start_time_unix_nano == first.start_time_unix_nano
    assert (first.count, second.count) == (1, 2)


def test_every_reader_gets_every_measurement_once_in_its_own_temporality() -> None:
    cumulative = InMemoryMetricReader()
    delta = InMemoryMetricReader(preferred_temporality={SDKHistogram: AggregationTemporality.DELTA})
    meter = MeterProvider(metric_readers=[cumulative, delta]).get_meter("scope")
    recorder = recorder_for(meter, [SPEC])
    assert recorder is not None
    for round_values in ([0.1, 0.2], [0.3], [0.4, 0.5, 0.6]):
        for value in round_values:
            recorder.record({"a": 1}, (value,), None)
        delta_points = points(delta.get_metrics_data(), SPEC.name)
        assert [point.count for point in delta_points] == [len(round_values)]
    # the cumulative reader collects once, after everything: it sees all six measurements exactly once
    (total,) = points(cumulative.get_metrics_data(), SPEC.name)
    assert total.count == 6
    assert total.sum == pytest.approx(2.1)


def test_a_reader_added_later_sees_measurements_from_then_on() -> None:
    first = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[first])
    recorder = recorder_for(provider.get_meter("scope"), [SPEC])
    assert recorder is not None
    recorder.record({"a": 1}, (0.1,), None)
    points(first.get_metrics_data(), SPEC.name)  # collected before the second reader exists
    second = InMemoryMetricReader()
    provider.add_metric_reader(second)
    points(first.get_metrics_data(), SPEC.name)  # the next collection of a joined reader joins the new one
    recorder.record({"a": 1}, (0.2,), None)
    assert [point.count for point in points(second.get_metrics_data(), SPEC.name)] == [1]
    assert [point.count for point in points(first.get_metrics_data(), SPEC.name)] == [2]


def test_several_histograms_share_one_row_and_none_is_not_measured() -> None:
    reader = InMemoryMetricReader()
    recorder = recorder_for(MeterProvider(metric_readers=[reader]).get_meter("scope"), [SPEC, SIZE])
    assert recorder is not None
    recorder.record({"a": 1}, (0.2, None), None)
    recorder.record({"a": 1}, (0.3, 50), None)
    data = reader.get_metrics_data()
    assert [point.count for point in points(data, SPEC.name)] == [2]
    (size,) = points(data, SIZE.name)
    assert (size.count, size.sum, tuple(size.bucket_counts)) == (1, 50, (0, 0, 1, 0))


def test_equal_attribute_sets_in_different_objects_are_one_series() -> None:
    reader = InMemoryMetricReader()
    recorder = recorder_for(MeterProvider(metric_readers=[reader]).get_meter("scope"), [SPEC])
    assert recorder is not None
    for _ in range(3):
        recorder.record({"b": 2, "a": 1}, (0.2,), None)  # a new dict each time, as after a cache is cleared
    recorder.record({"a": 1, "b": 2}, (0.2,), None)
    (point,) = points(reader.get_metrics_data(), SPEC.name)
    assert point.count == 4
    assert dict(point.attributes or {}) == {"a": 1, "b": 2}


def test_attribute_sets_beyond_the_cardinality_limit_go_to_the_overflow_series() -> None:
    reader = InMemoryMetricReader()
    recorder = recorder_for(MeterProvider(metric_readers=[reader]).get_meter("scope"), [SPEC])
    assert recorder is not None
    for index in range(CARDINALITY_LIMIT + 50):
        recorder.record({"i": index}, (0.1,), None)
    found = points(reader.get_metrics_data(), SPEC.name)
    overflow = [point for point in found if (point.attributes or {}).get("otel.metric.overflow") is True]
    assert len(found) == CARDINALITY_LIMIT + 1
    assert [point.count for point in overflow] == [50]


def test_exemplars_follow_the_trace_based_filter(sampled_context: Context) -> None:
    recorder, histogram, fast_reader, sdk_reader = fast_and_sdk()
    unsampled = trace.set_span_in_context(TracerProvider(sampler=ALWAYS_OFF).get_tracer("t").start_span("dropped"))
    for context in (sampled_context, unsampled, Context()):
        recorder.record({"a": 1}, (0.2,), context)
        histogram.record(0.2, {"a": 1}, context)
    (fast,) = points(fast_reader.get_metrics_data(), SPEC.name)
    (sdk,) = points(sdk_reader.get_metrics_data(), SPEC.name)
    span_context = trace.get_current_span(sampled_context).get_span_context()
    assert [(e.value, e.span_id, e.trace_id) for e in fast.exemplars] == [
        (0.2, span_context.span_id, span_context.trace_id)
    ]
    assert [(e.value, e.span_id, e.trace_id) for e in sdk.exemplars] == [
        (e.value, e.span_id, e.trace_id) for e in fast.exemplars
    ]
    # reported once: the next collection has no new sampled measurement, so no exemplar
    (again,) = points(fast_reader.get_metrics_data(), SPEC.name)
    assert again.exemplars == []


def test_exemplars_always_off_and_always_on(sampled_context: Context) -> None:
    recorder, _, reader, _ = fast_and_sdk(exemplar_filter=AlwaysOffExemplarFilter())
    recorder.record({"a": 1}, (0.2,), sampled_context)
    assert points(reader.get_metrics_data(), SPEC.name)[0].exemplars == []

    recorder, _, reader, _ = fast_and_sdk(exemplar_filter=AlwaysOnExemplarFilter())
    unsampled = trace.set_span_in_context(TracerProvider(sampler=ALWAYS_OFF).get_tracer("t").start_span("x"))
    recorder.record({"a": 1}, (0.2,), unsampled)
    recorder.record({"a": 1}, (20.0,), Context())  # no span: kept, without trace and span ids (as the SDK)
    (point,) = points(reader.get_metrics_data(), SPEC.name)
    unsampled_ids = trace.get_current_span(unsampled).get_span_context()
    assert [(e.value, e.span_id) for e in point.exemplars] == [(0.2, unsampled_ids.span_id), (20.0, None)]


def test_providers_veil_cannot_join_record_through_sdk_instruments() -> None:
    reader = InMemoryMetricReader()
    with_view = MeterProvider(metric_readers=[reader], views=[View(instrument_name="*")])
    assert not request_metrics(with_view.get_meter("s"), "server", dup=False).aggregated
    exponential = InMemoryMetricReader(preferred_aggregation={SDKHistogram: ExponentialBucketHistogramAggregation()})
    assert not request_metrics(
        MeterProvider(metric_readers=[exponential]).get_meter("s"), "server", dup=False
    ).aggregated
    assert not request_metrics(trace_free_noop_meter(), "server", dup=False).aggregated
    fixed = InMemoryMetricReader(preferred_aggregation={SDKHistogram: ExplicitBucketHistogramAggregation([1.0, 2.0])})
    assert not request_metrics(MeterProvider(metric_readers=[fixed]).get_meter("s"), "server", dup=False).aggregated
    # what the OTLP exporters ask for by default: explicit buckets, the instrument's own boundaries
    otlp_like = InMemoryMetricReader(preferred_aggregation={SDKHistogram: ExplicitBucketHistogramAggregation()})
    assert request_metrics(MeterProvider(metric_readers=[otlp_like]).get_meter("s"), "server", dup=False).aggregated
    plain = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("s")
    assert request_metrics(plain, "server", dup=True).aggregated


def trace_free_noop_meter() -> Any:
    from opentelemetry.metrics import NoOpMeterProvider

    return NoOpMeterProvider().get_meter("s")


def test_request_metrics_merge_into_the_scope_of_the_sdk_instruments_of_the_same_meter() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("veil.instrumentation.test", "1.0")
    counter = meter.create_counter("test.counter")
    metrics = request_metrics(meter, "server", dup=True)
    counter.add(1)
    metrics.record(0.25, 10, 20, {"http.request.method": "GET"}, {"http.method": "GET"}, Context())
    data = reader.get_metrics_data()
    assert data is not None
    (scope,) = data.resource_metrics[0].scope_metrics
    names = sorted(metric.name for metric in scope.metrics)
    assert names == sorted(
        [
            "test.counter",
            "http.server.request.duration",
            "http.server.request.body.size",
            "http.server.response.body.size",
            "http.server.duration",
            "http.server.request.size",
            "http.server.response.size",
        ]
    )
    (old,) = points(data, "http.server.duration")
    assert old.sum == pytest.approx(250.0)
    assert dict(old.attributes or {}) == {"http.method": "GET"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_empty_and_does_not_report_the_parents_measurements() -> None:
    reader = InMemoryMetricReader()
    recorder = recorder_for(MeterProvider(metric_readers=[reader]).get_meter("scope"), [SPEC])
    assert recorder is not None
    recorder.record({"a": 1}, (0.1,), None)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            recorder.record({"a": 1}, (0.2,), None)
            counts = [point.count for point in points(reader.get_metrics_data(), SPEC.name)]
            os.write(write_end, repr(counts).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as pipe:
        assert pipe.read() == "[1]"
    assert [point.count for point in points(reader.get_metrics_data(), SPEC.name)] == [1]


def _hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


@pytest.mark.parametrize("temporality", ["delta", "cumulative"])
def test_veil_aggregated_request_histograms_reach_the_receiver(
    configure_veil: Any, otlp_receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, temporality: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", temporality)
    handle = configure_veil(service_name="histograms", otlp_endpoint=otlp_receiver.http_endpoint)
    app = VeilWSGIMiddleware(_hello)
    assert app._telemetry.metrics.aggregated  # the fast path is the one under test
    for _ in range(3):
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/hello",
            "wsgi.url_scheme": "http",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.input": io.BytesIO(b""),
        }
        body = app(environ, lambda status, headers, exc_info=None: None)
        assert b"".join(body) == b"hello"  # a list body: the request ended when the application returned it
    assert handle.force_flush(5000)

    spans = otlp_receiver.wait_for_spans(3, timeout=10)
    duration = otlp_receiver.wait_for_metric("http.server.request.duration", timeout=10)
    assert duration.kind == "histogram" and duration.unit == "s"
    assert duration.temporality == temporality.upper()
    assert duration.scope_name == "veil.instrumentation.wsgi"
    assert duration.resource["service.name"] == "histograms"
    (point,) = duration.points
    assert point.count == 3
    assert point.attributes == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    assert point.explicit_bounds == DURATION_BUCKETS
    assert point.exemplars and {exemplar.trace_id for exemplar in point.exemplars} <= {span.trace_id for span in spans}
    size = otlp_receiver.wait_for_metric("http.server.response.body.size", timeout=10)
    assert size.points[0].sum == 15
    active = otlp_receiver.wait_for_metric("http.server.active_requests", timeout=10)
    assert active.scope_name == duration.scope_name


def test_concurrent_records_across_batches_are_all_counted_once() -> None:
    reader = InMemoryMetricReader()
    recorder = recorder_for(MeterProvider(metric_readers=[reader]).get_meter("scope"), [SPEC, SIZE])
    assert recorder is not None
    attribute_sets = [{"route": "/a"}, {"route": "/b"}]

    def work(offset: int) -> None:
        for index in range(1000):
            recorder.record(attribute_sets[(offset + index) % 2], (0.01, index % 200), None)

    threads = [threading.Thread(target=work, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    midway = points(reader.get_metrics_data(), SPEC.name)  # a collection while threads are still recording
    for thread in threads:
        thread.join()
    final = points(reader.get_metrics_data(), SPEC.name)
    assert sum(point.count for point in final) == 8000
    assert sum(point.count for point in midway) <= 8000
    assert sorted(point.count for point in final) == [4000, 4000]
    sizes = points(reader.get_metrics_data(), SIZE.name)
    assert sum(point.sum for point in sizes) == 8 * sum(index % 200 for index in range(1000))


def test_a_dropped_provider_takes_veil_s_aggregation_state_with_it() -> None:
    import gc

    from veil import _histograms

    gc.collect()
    before = len(_histograms._ALL_HUBS)
    for _ in range(20):
        provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        assert request_metrics(provider.get_meter("s"), "server", dup=True).aggregated
        provider.shutdown()
    del provider
    gc.collect()
    assert len(_histograms._ALL_HUBS) <= before


def test_the_sdk_instrument_fallback_records_the_same_histograms() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], views=[View(instrument_name="*")])
    metrics = request_metrics(provider.get_meter("s"), "server", dup=True)
    assert not metrics.aggregated
    metrics.record(0.25, None, 20, {"http.request.method": "GET"}, {"http.method": "GET"}, Context())
    data = reader.get_metrics_data()
    (duration,) = points(data, "http.server.request.duration")
    assert (duration.count, duration.sum, tuple(duration.explicit_bounds)) == (1, 0.25, DURATION_BUCKETS)
    assert points(data, "http.server.request.body.size") == []  # None: not measured
    assert [point.sum for point in points(data, "http.server.response.body.size")] == [20]
    assert [point.sum for point in points(data, "http.server.duration")] == [250.0]
