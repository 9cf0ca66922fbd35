"""Per-request overhead of tracing a FastAPI hello-world app: bare, veil, upstream contrib, and the floor.

One process, one run, interleaved rounds: every round times N requests of each variant in turn (the order
rotates each round), and the median of the per-round means is reported. Requests are raw ASGI calls on one
event loop (no HTTP client, no sockets) so the numbers are the instrumentation's own cost.

Variants (each its own FastAPI app, same routes):
  bare     no instrumentation
  veil     veil.instrumentation.fastapi.FastAPIInstrumentor.instrument_app(app)
  contrib  opentelemetry.instrumentation.fastapi.FastAPIInstrumentor.instrument_app(app), defaults
           (a SERVER span plus `http send` spans per request)
  floor    one bare SDK span with 10 attributes (not a request): the cost of the span alone, in a tight
           loop (warm caches)
  span     the same bare span (10 attributes, made current) around the bare app's request: the floor
           measured in context, where the SDK's own code competes with FastAPI's for caches
  veil-traces  veil with tracing only (a no-op MeterProvider), to show what the metrics cost

veil and contrib get the same setup: a TracerProvider with a BatchSpanProcessor to a no-op exporter and a
MeterProvider with an in-memory reader, passed explicitly (no global providers, so FastAPI's own native
telemetry stays off for every variant). Run: `python benchmarks/bench_asgi.py [--rounds 15] [--requests 2000]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry import context, trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind


class NoOpExporter(SpanExporter):
    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def providers() -> tuple[TracerProvider, MeterProvider, NoOpExporter]:
    exporter = NoOpExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tracer_provider, meter_provider, exporter


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"message": f"hello {name}"}

    return app


HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"bench/1.0"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
]


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/hello/world",
        "raw_path": b"/hello/world",
        "root_path": "",
        "query_string": b"",
        "headers": HEADERS,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    return None


Call = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def run_requests(call: Call, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        await call(scope(), receive, send)
    return (time.perf_counter() - start) / count


FLOOR_ATTRIBUTES = {f"attribute.{index}": f"value {index}" for index in range(10)}


def one_span_around(app: Call, tracer: Any) -> Call:
    async def call(scope: dict[str, Any], receive: Any, send: Any) -> None:
        span = tracer.start_span("GET /hello/{name}", kind=SpanKind.SERVER, attributes=FLOOR_ATTRIBUTES)
        token = context.attach(trace.set_span_in_context(span))
        try:
            await app(scope, receive, send)
        finally:
            context.detach(token)
            span.end()

    return call


async def run_floor(tracer: Any, count: int) -> float:
    attributes = FLOOR_ATTRIBUTES
    start = time.perf_counter()
    for _ in range(count):
        span = tracer.start_span("GET /hello/{name}", kind=SpanKind.SERVER, attributes=attributes)
        span.end()
    return (time.perf_counter() - start) / count


async def main(rounds: int, requests: int) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor as ContribInstrumentor

    from veil.instrumentation.fastapi import FastAPIInstrumentor as VeilInstrumentor

    bare_app = make_app()
    veil_app = make_app()
    traces_app = make_app()
    contrib_app = make_app()
    span_app = make_app()
    veil_tracer_provider, veil_meter_provider, veil_exporter = providers()
    traces_tracer_provider, _, _ = providers()
    span_tracer_provider, _, _ = providers()
    contrib_tracer_provider, contrib_meter_provider, contrib_exporter = providers()
    floor_tracer_provider, _, floor_exporter = providers()
    VeilInstrumentor.instrument_app(veil_app, tracer_provider=veil_tracer_provider, meter_provider=veil_meter_provider)
    VeilInstrumentor.instrument_app(
        traces_app, tracer_provider=traces_tracer_provider, meter_provider=NoOpMeterProvider()
    )
    ContribInstrumentor.instrument_app(
        contrib_app, tracer_provider=contrib_tracer_provider, meter_provider=contrib_meter_provider
    )
    # veil wraps FastAPI.__call__ on the class; bare and contrib call the original function so that they
    # do not pay veil's (tiny) pass-through check.
    original_call = getattr(FastAPI.__call__, "__wrapped__", FastAPI.__call__)

    def unwrapped(app: FastAPI) -> Call:
        async def call(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await original_call(app, scope, receive, send)

        return call

    span_tracer = span_tracer_provider.get_tracer("span")
    variants: dict[str, Callable[[int], Awaitable[float]]] = {
        "bare": lambda count: run_requests(unwrapped(bare_app), count),
        "veil": lambda count: run_requests(veil_app, count),
        "contrib": lambda count: run_requests(unwrapped(contrib_app), count),
        "floor": lambda count: run_floor(floor_tracer_provider.get_tracer("floor"), count),
        "span": lambda count: run_requests(one_span_around(unwrapped(span_app), span_tracer), count),
        "veil-traces": lambda count: run_requests(traces_app, count),
    }
    names = list(variants)
    for name in names:  # warm-up
        await variants[name](200)
    results: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            gc.collect()
            results[name].append(await variants[name](requests))
    all_providers = (
        veil_tracer_provider,
        traces_tracer_provider,
        contrib_tracer_provider,
        floor_tracer_provider,
        span_tracer_provider,
    )
    for provider in all_providers:
        provider.force_flush()
        provider.shutdown()

    median = {name: statistics.median(values) * 1e6 for name, values in results.items()}
    veil_overhead = median["veil"] - median["bare"]
    contrib_overhead = median["contrib"] - median["bare"]
    traces_overhead = median["veil-traces"] - median["bare"]
    span_overhead = median["span"] - median["bare"]
    print(f"python {sys.version.split()[0]}, {rounds} rounds x {requests} requests per variant (median µs)")
    print(f"  bare FastAPI request          {median['bare']:8.1f} µs")
    print(f"  veil                          {median['veil']:8.1f} µs   overhead {veil_overhead:7.1f} µs")
    print(f"  contrib (default, 3 spans)    {median['contrib']:8.1f} µs   overhead {contrib_overhead:7.1f} µs")
    print(f"  veil, traces only (no metrics){median['veil-traces']:8.1f} µs   overhead {traces_overhead:7.1f} µs")
    print(f"  floor: one SDK span, 10 attrs {median['floor']:8.1f} µs   (tight loop)")
    print(f"  one bare span around the app  {median['span']:8.1f} µs   overhead {span_overhead:7.1f} µs")
    print(f"  veil / contrib overhead       {veil_overhead / contrib_overhead:8.2f}  (target <= 0.25)")
    print(f"  veil overhead / floor         {veil_overhead / median['floor']:8.2f}  (target <= 2.0)")
    print(f"  veil overhead / in-app span   {veil_overhead / span_overhead:8.2f}")
    print(
        f"  spans exported: veil {veil_exporter.exported}, contrib {contrib_exporter.exported}, "
        f"floor {floor_exporter.exported}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.requests))
