"""Bounds: exit time with a black-holing collector, memory under a sustained fault, multiprocessing
children that export at exit, and veil's own metrics."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.semconv._incubating.metrics.otel_metrics import (
    OTEL_SDK_EXPORTER_SPAN_EXPORTED,
    OTEL_SDK_PROCESSOR_SPAN_PROCESSED,
    OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY,
)

import veil
from tests.fixtures.otlp import OTLPReceiver
from tests.resilience.faults import FaultProxy
from tests.resilience.harness import settle, telemetry_for, wait_until
from tests.resilience.support import child_env, pids_of, rss_bytes, run_script

SHUTDOWN_BOUND_SECONDS = 1.0


@pytest.fixture(params=["http/protobuf", "grpc"])
def black_hole(request: pytest.FixtureRequest, otlp_receiver: OTLPReceiver) -> Iterator[tuple[FaultProxy, str]]:
    protocol = str(request.param)
    upstream = otlp_receiver.grpc_port if protocol == "grpc" else otlp_receiver.http_port
    with FaultProxy(upstream) as proxy:
        proxy.blackhole()
        yield proxy, protocol


def test_exit_with_a_black_holing_collector_is_bounded(black_hole: tuple[FaultProxy, str]) -> None:
    """The collector accepts and never answers; each export could take 10 s and be retried: the process
    still exits within VEIL_SHUTDOWN_TIMEOUT (1 s here) of its last statement."""
    proxy, protocol = black_hole
    env = child_env(
        proxy.url,
        protocol,
        VEIL_SHUTDOWN_TIMEOUT=str(int(SHUTDOWN_BOUND_SECONDS * 1000)),
        OTEL_EXPORTER_OTLP_TIMEOUT="10000",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="50",
    )
    process = run_script("tests.resilience.apps.exit_app", "500", env=env)
    assert process.stdout is not None
    last_statement = None
    for line in process.stdout:
        if line.startswith("exiting "):
            last_statement = float(line.split()[1])
            break
    assert last_statement is not None, process.communicate(timeout=30)[0]
    output, _ = process.communicate(timeout=30)
    exited = time.monotonic()
    assert process.returncode == 0, output
    assert proxy.connections_accepted >= 1  # an export really was stuck in the black hole
    assert exited - last_statement < SHUTDOWN_BOUND_SECONDS + 1.0, (exited - last_statement, output)
    assert "shutdown did not finish within 1000 ms" in output
    assert "Traceback" not in output


def test_memory_stays_bounded_during_a_sustained_fault(
    configure_veil: Callable[..., veil.Telemetry], otlp_receiver: OTLPReceiver
) -> None:
    """30 000 spans into a black hole: the queue cap holds, RSS stays flat, every span is accounted for."""
    with FaultProxy(otlp_receiver.http_port) as proxy:
        proxy.blackhole()
        telemetry = configure_veil(
            **telemetry_for(proxy.url, "http/protobuf", bsp_max_queue_size=512, otlp_timeout_millis=2000)
        )
        tracer = telemetry.tracer_provider.get_tracer("memory")  # type: ignore[union-attr]
        payload = "x" * 512

        def burst(count: int) -> None:
            for index in range(count):
                with tracer.start_as_current_span("work") as span:
                    span.set_attribute("payload", payload)
                    span.set_attribute("index", index)

        burst(2000)  # warm up: allocator pools, the queue filled to its cap
        gc.collect()
        before = rss_bytes(os.getpid())
        burst(28_000)
        gc.collect()
        growth = rss_bytes(os.getpid()) - before
        health = telemetry.health().traces
        # Unbounded, 28 000 spans with a 512-byte attribute would hold well over 30 MB.
        assert growth < 12 * 1024 * 1024, growth
        assert health.queued <= 512 + 16
        assert health.dropped >= 30_000 - 512 - 16 * 4
        proxy.forward()
        settle(telemetry, timeout=20)
        health = telemetry.health().traces
        received = {span.span_id for span in otlp_receiver.spans()}
        assert len(received) == health.exported
        assert health.exported + health.dropped + health.failed == 30_000


def test_multiprocessing_children_export_their_own_spans_at_exit(otlp_receiver: OTLPReceiver) -> None:
    """Forked children end with os._exit() (no atexit): veil flushes them through multiprocessing's
    finalizers; the parent's spans before and after the fork are exported once, by the parent."""
    env = child_env(otlp_receiver.http_endpoint, "http/protobuf", OTEL_BSP_SCHEDULE_DELAY="30000")
    process = run_script("tests.resilience.apps.fork_app", env=env)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    spans = otlp_receiver.wait_for_spans(62, timeout=10)
    time.sleep(0.3)
    spans = otlp_receiver.spans()
    assert len(spans) == len({span.span_id for span in spans}) == 62, otlp_receiver.summary()
    counts = pids_of(spans)
    assert sorted(counts.values()) == [2, 20, 20, 20], counts  # the parent, then three children


def test_veil_publishes_its_own_otel_sdk_metrics(
    configure_veil: Callable[..., veil.Telemetry], otlp_receiver: OTLPReceiver
) -> None:
    telemetry = configure_veil(
        **telemetry_for(
            otlp_receiver.http_endpoint,
            "http/protobuf",
            metrics_exporter="otlp",
            bsp_max_queue_size=8,
            bsp_max_export_batch_size=8,
        )
    )
    tracer = telemetry.tracer_provider.get_tracer("metrics")  # type: ignore[union-attr]
    for _ in range(5):
        with tracer.start_as_current_span("kept"):
            pass
    settle(telemetry)
    assert telemetry.force_flush(5000)
    exported = otlp_receiver.wait_for_metric(OTEL_SDK_EXPORTER_SPAN_EXPORTED)
    assert exported.scope_name == "veil"
    assert [point.value for point in exported.points if "error.type" not in point.attributes] == [5]
    assert {point.attributes["otel.component.type"] for point in exported.points} == {"otlp_http_span_exporter"}
    processed = otlp_receiver.wait_for_metric(OTEL_SDK_PROCESSOR_SPAN_PROCESSED)
    assert [point.value for point in processed.points] == [5]
    capacity = otlp_receiver.wait_for_metric(OTEL_SDK_PROCESSOR_SPAN_QUEUE_CAPACITY)
    assert [point.value for point in capacity.points] == [8]
    assert wait_until(lambda: telemetry.health().metrics.exported > 0, 5)
    assert telemetry.health().ok
    assert telemetry.health().as_dict()["traces"] == {
        "exported": 5, "dropped": 0, "failed": 0, "rejected": 0, "queued": 0
    }  # fmt: skip
