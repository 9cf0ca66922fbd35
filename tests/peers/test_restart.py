"""The real server stopped mid-run and started again: what was queued within the processor's bound arrives
once it is back, the rest is counted as dropped in Telemetry.health(), and nothing is lost silently.

Jaeger over OTLP/HTTP (a Jaeger of its own), and the session's Zipkin server with veil's Zipkin exporter
(restarted on the same port, and running again when the test ends).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import veil
from tests.peers.conftest import start_jaeger
from tests.peers.otlp_json import stored_spans
from tests.peers.servers import LocalZipkin, get_json, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

QUEUE = 16
BATCH = 4
BEFORE = 5  # spans exported while the server is up
DURING = 60  # spans recorded while it is down: more than the queue holds


class Server(Protocol):
    def start(self, timeout: float = ...) -> Any: ...
    def stop(self) -> Any: ...


class Peer:
    """One restartable server, how veil exports to it, and how to count a trace's stored spans."""

    def __init__(self, server: Server, settings: dict[str, Any], count: Callable[[str], int]) -> None:
        self.server = server
        self.settings = settings
        self.count = count


@pytest.fixture(params=["jaeger-otlp", "zipkin"])
def peer(request: pytest.FixtureRequest, peer_logs: Path) -> Iterator[Peer]:
    if request.param == "jaeger-otlp":
        jaeger = start_jaeger(peer_logs, "jaeger-restart")
        settings: dict[str, Any] = {"traces_exporter": "otlp", "otlp_endpoint": jaeger.otlp_http_endpoint}
        settings.update(otlp_protocol="http/protobuf", otlp_timeout_millis=30_000, bsp_export_timeout_millis=30_000)
        server: Server = jaeger

        def count(trace_id: str) -> int:
            return len(stored_spans(jaeger.ui_url, trace_id))
    else:
        zipkin: LocalZipkin = request.getfixturevalue("zipkin")
        settings = {"traces_exporter": "zipkin", "zipkin_endpoint": zipkin.spans_endpoint}
        server = zipkin

        def count(trace_id: str) -> int:
            return len(get_json(f"{zipkin.url}/api/v2/trace/{trace_id}") or [])

    try:
        yield Peer(server, settings, count)
    finally:
        if request.param == "zipkin":
            if not zipkin.running:
                zipkin.start()
        else:
            server.stop()


def _spans_in_one_trace(tracer: trace.Tracer, count: int, name: str) -> str:
    """`count` spans that share one (remote) parent, hence one trace; returns the trace id."""
    trace_id = random.getrandbits(128) | 1
    parent = NonRecordingSpan(SpanContext(trace_id, 0x1F, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    context = trace.set_span_in_context(parent)
    for index in range(count):
        with tracer.start_as_current_span(name, context=context) as span:
            span.set_attribute("index", index)
    return format(trace_id, "032x")


def test_the_server_stops_and_comes_back(configure_veil: Callable[..., veil.Telemetry], peer: Peer) -> None:
    telemetry = configure_veil(
        service_name="peer-restart",
        metrics_exporter="none",
        logs_exporter="none",
        bsp_max_queue_size=QUEUE,
        bsp_max_export_batch_size=BATCH,
        bsp_schedule_delay_millis=50,
        shutdown_timeout_millis=5_000,
        **peer.settings,
    )
    assert telemetry.tracer_provider is not None
    tracer = telemetry.tracer_provider.get_tracer("peer.restart")

    before = _spans_in_one_trace(tracer, BEFORE, "before")
    assert telemetry.force_flush(10_000)
    assert wait_for(lambda: peer.count(before) == BEFORE, 15), "the spans sent while up did not arrive"

    peer.server.stop()
    during = _spans_in_one_trace(tracer, DURING, "during")  # one batch in flight (retrying), QUEUE queued
    peer.server.start()

    assert wait_for(lambda: telemetry.health().traces.queued == 0, 60), telemetry.health()
    health = telemetry.health().traces
    arrived = wait_for(lambda: peer.count(during) >= health.exported - BEFORE, 15) and peer.count(during)
    # Every span is accounted for: stored by the server, or counted as dropped (the queue was full) or failed.
    assert health.exported + health.dropped + health.failed == BEFORE + DURING, health
    assert arrived == health.exported - BEFORE, (arrived, health)
    assert health.failed == 0, health  # the retries outlasted the restart
    assert health.dropped > 0, health  # more than the bound was recorded while down
    assert QUEUE <= arrived <= QUEUE + BATCH, (arrived, health)  # what the queue (and the batch in flight) held
