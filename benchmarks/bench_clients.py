"""Per-request overhead of veil's HTTP client instrumentation (httpx sync/async, requests) against contrib.

One process, one run: every round times each variant on the same GET to a local keep-alive server, the
variants interleaved within the round; the median per-request time over the rounds is reported.
Overhead = variant - bare. veil and upstream contrib share the same SDK setup: a TracerProvider with a
BatchSpanProcessor to a no-op exporter and a MeterProvider with an in-memory reader. The floor is one bare SDK
span with 10 attributes through that same processor. For requests, veil instruments requests *and* urllib3
(as `veil.configure()` does; the urllib3 layer stays silent inside requests), contrib instruments requests.

The server is a minimal asyncio HTTP/1.1 keep-alive responder on 127.0.0.1 in a child process (so it does not
compete for this process's GIL); the measured time is the client's and its instrumentation's.

    python benchmarks/bench_clients.py [--rounds 15] [--requests 300]

The contrib packages (opentelemetry-instrumentation-httpx / -requests) are installed only for this script
(extra `bench`); they are never imported by veil or its tests.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import requests
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


_SERVER_CODE = """
import asyncio, sys
RESPONSE = __RESPONSE__
class Responder(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""
    def data_received(self, data):
        self.buffer += data
        while b"\\r\\n\\r\\n" in self.buffer:
            _head, _, self.buffer = self.buffer.partition(b"\\r\\n\\r\\n")
            self.transport.write(RESPONSE)
async def main():
    server = await asyncio.get_running_loop().create_server(Responder, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
""".replace("__RESPONSE__", repr(_RESPONSE))


def start_server() -> tuple[int, subprocess.Popen[str]]:
    """Start the responder in a child process (so it does not share the GIL); return its port and process."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER_CODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return int(process.stdout.readline()), process


def providers() -> tuple[TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        BatchSpanProcessor(NullExporter(), max_queue_size=1_000_000, max_export_batch_size=4096)
    )
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


# --------------------------------------------------------------------------------------- instrumentation


class Variant:
    """A name plus how to switch its instrumentation on and off around a timed batch."""

    def __init__(self, name: str, on: Callable[[], None], off: Callable[[], None]) -> None:
        self.name, self.on, self.off = name, on, off


def variants(library: str, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> list[Variant]:
    options = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    result = [Variant("bare", lambda: None, lambda: None)]
    if library == "httpx":
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        from veil.instrumentation.httpx import HTTPXInstrumentor

        veil_httpx, contrib_httpx = HTTPXInstrumentor(), HTTPXClientInstrumentor()
        result.append(Variant("veil", lambda: veil_httpx.instrument(**options), veil_httpx.uninstrument))
        result.append(Variant("contrib", lambda: contrib_httpx.instrument(**options), contrib_httpx.uninstrument))
    else:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor as ContribRequests

        from veil.instrumentation.requests import RequestsInstrumentor
        from veil.instrumentation.urllib3 import URLLib3Instrumentor

        veil_requests, veil_urllib3, contrib_requests = RequestsInstrumentor(), URLLib3Instrumentor(), ContribRequests()

        def veil_on() -> None:
            veil_requests.instrument(**options)
            veil_urllib3.instrument(**options)

        def veil_off() -> None:
            veil_requests.uninstrument()
            veil_urllib3.uninstrument()

        result.append(Variant("veil", veil_on, veil_off))
        result.append(Variant("contrib", lambda: contrib_requests.instrument(**options), contrib_requests.uninstrument))
    return result


# ----------------------------------------------------------------------------------------------- timing


def time_sync(call: Callable[[], Any], count: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - start) / count


def time_async(loop: asyncio.AbstractEventLoop, call: Callable[[], Any], count: int) -> float:
    async def batch() -> float:
        start = time.perf_counter()
        for _ in range(count):
            await call()
        return (time.perf_counter() - start) / count

    gc.collect()
    return loop.run_until_complete(batch())


def floor(tracer_provider: TracerProvider, count: int) -> float:
    tracer = tracer_provider.get_tracer("bench.floor")
    attributes = {f"attribute.{index}": index for index in range(10)}

    def one() -> None:
        tracer.start_span("floor", attributes=attributes).end()

    return time_sync(one, count)


def run_scenario(
    name: str,
    library: str,
    timed: Callable[[int], float],
    tracer_provider: TracerProvider,
    meter_provider: MeterProvider,
    rounds: int,
    count: int,
) -> dict[str, float]:
    chosen = variants(library, tracer_provider, meter_provider)
    samples: dict[str, list[float]] = {variant.name: [] for variant in chosen}
    for variant in chosen:  # warm-up
        variant.on()
        timed(max(count // 5, 20))
        variant.off()
    for round_index in range(rounds):
        order = chosen if round_index % 2 == 0 else list(reversed(chosen))
        for variant in order:
            variant.on()
            try:
                samples[variant.name].append(timed(count))
            finally:
                variant.off()
    medians = {key: statistics.median(values) for key, values in samples.items()}
    print(f"\n{name}")
    for key, value in medians.items():
        extra = "" if key == "bare" else f"  overhead {(value - medians['bare']) * 1e6:7.1f} us"
        print(f"  {key:8s} {value * 1e6:8.1f} us/request{extra}")
    veil_overhead = medians["veil"] - medians["bare"]
    contrib_overhead = medians["contrib"] - medians["bare"]
    ratio = veil_overhead / contrib_overhead if contrib_overhead > 0 else float("nan")
    print(f"  veil/contrib overhead ratio: {ratio:.2f}")
    return {"veil": veil_overhead, "contrib": contrib_overhead, "ratio": ratio, "bare": medians["bare"]}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=300)
    arguments = parser.parse_args(argv)
    rounds, count = arguments.rounds, arguments.requests

    port, server = start_server()
    url = f"http://127.0.0.1:{port}/items/42?page=1"
    tracer_provider, meter_provider = providers()

    floor_time = statistics.median(floor(tracer_provider, count) for _ in range(rounds))
    print(f"floor: one bare SDK span with 10 attributes through the BatchSpanProcessor: {floor_time * 1e6:.1f} us")

    results: dict[str, dict[str, float]] = {}
    sync_client = httpx.Client()
    results["httpx (sync)"] = run_scenario(
        "httpx sync: Client.get",
        "httpx",
        lambda n: time_sync(lambda: sync_client.get(url), n),
        tracer_provider,
        meter_provider,
        rounds,
        count,
    )
    sync_client.close()

    loop = asyncio.new_event_loop()
    async_client = httpx.AsyncClient()
    results["httpx (async)"] = run_scenario(
        "httpx async: AsyncClient.get",
        "httpx",
        lambda n: time_async(loop, lambda: async_client.get(url), n),
        tracer_provider,
        meter_provider,
        rounds,
        count,
    )
    loop.run_until_complete(async_client.aclose())
    loop.close()

    session = requests.Session()
    results["requests"] = run_scenario(
        "requests: Session.get",
        "requests",
        lambda n: time_sync(lambda: session.get(url), n),
        tracer_provider,
        meter_provider,
        rounds,
        count,
    )
    session.close()

    targets = {"httpx (sync)": 1 / 3, "httpx (async)": 1 / 3, "requests": 1 / 2}
    print("\n| scenario | bare µs/req | veil overhead µs | contrib overhead µs | veil/contrib | target |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        target = targets[name]
        verdict = "met" if result["ratio"] <= target else "NOT met"
        print(
            f"| {name} | {result['bare'] * 1e6:.1f} | {result['veil'] * 1e6:.1f} | {result['contrib'] * 1e6:.1f} "
            f"| {result['ratio']:.2f} | ≤ {target:.2f} ({verdict}) |"
        )
    print(f"\nfloor (bare span, 10 attributes): {floor_time * 1e6:.1f} µs")
    tracer_provider.shutdown()
    server.terminate()
    server.wait(5)


if __name__ == "__main__":
    main()
