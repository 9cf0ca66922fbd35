"""Per-request overhead of veil's HTTP client instrumentation (httpx sync/async, requests) against contrib.

One process, one run: every round times each variant on the same GET, the variants interleaved within the
round (order reversed every other round); the median per-request time over the rounds is reported.
Overhead = variant - bare. All variants share one SDK setup: a TracerProvider with a BatchSpanProcessor to a
no-op exporter and a MeterProvider with an in-memory reader. The "floor" line is one bare SDK span with 10
attributes through that same processor. For requests, veil instruments requests *and* urllib3 (as
`veil.configure()` does; the urllib3 layer stays silent inside requests), contrib instruments requests.

Variants: bare (no instrumentation), veil, contrib (upstream opentelemetry-instrumentation-httpx /
-requests), and span-floor: a hand-written wrapt wrapper on the method veil wraps that makes only the tracing
calls any instrumentation has to make (`SpanFloor`). The table splits veil's overhead into that span floor,
veil's metric recording (timed on its own, `metrics_record_cost`) and the rest, veil's own code.

Before timing, every variant is checked once with an in-memory span exporter: exactly one CLIENT span per
request for veil, contrib and the span floor, none for bare, and the canned body read back; so the
comparison is between instrumentations doing their whole job.

Two transports (`--transport memory|loopback|both`, default both; one table each):

loopback
    A minimal asyncio HTTP/1.1 keep-alive responder on 127.0.0.1 in a child process (so it does not compete
    for this process's GIL). Real sockets, so the numbers carry the kernel's and the scheduler's noise.

memory
    CPU only, far less noisy: the socket I/O alone is replaced by a canned response; every layer above it
    runs as in a real call, so every instrumentation wraps exactly what it wraps in production:

    * httpx: veil wraps `Client.send` / `AsyncClient.send`, contrib wraps `HTTPTransport.handle_request` /
      `AsyncHTTPTransport.handle_async_request`. The client uses a real `httpx.HTTPTransport` (and
      `AsyncHTTPTransport`) whose httpcore connection pool is a real `httpcore.ConnectionPool` built with a
      canned *network backend*: httpcore's connection handling and h11's request writing and response
      parsing all run; only `connect_tcp` / `read` / `write` are in memory.
    * requests: contrib wraps `Session.send`; veil wraps `Session.send` and urllib3's
      `HTTPConnectionPool.urlopen`. A canned `HTTPAdapter` (anything at or above urlopen) would skip veil's
      urllib3 layer, so the canned part sits below every patched function: the session's real HTTPAdapter
      and PoolManager build a real `HTTPConnectionPool` subclass whose connections are real urllib3
      `HTTPConnection`s with an in-memory socket (`sendall` discards, `makefile` yields the canned response),
      so `urlopen`, `_make_request`, http.client's request writing and response parsing, and the
      `_close_conn` hook veil uses to end the span at end of body all run. The one other change is the
      keep-alive liveness check (`is_connected`, a `poll()` on the socket), which reports "connected".

    python benchmarks/bench_clients.py [--transport memory|loopback|both] [--rounds 15] [--requests 300]

The contrib packages (opentelemetry-instrumentation-httpx / -requests) are installed only for this script
(extra `bench`); they are never imported by veil or its tests.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpcore
import httpx
import requests
import urllib3.connection
import urllib3.connectionpool
import wrapt
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import SpanKind

_RESPONSE_BODY = b"ok"
_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\n" + _RESPONSE_BODY
_TARGET = "/items/42?page=1"


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


# ----------------------------------------------------------------------------------------- loopback server

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


# ------------------------------------------------------------------------------------ in-memory transport


class _CannedStream(httpcore.NetworkStream):
    """One keep-alive connection: every write of a request is answered by one canned response on read."""

    def __init__(self) -> None:
        self._pending = b""

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._pending = _RESPONSE  # a GET is written in one piece; the answer waits for the next reads

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    def close(self) -> None:
        self._pending = b""

    def get_extra_info(self, info: str) -> Any:
        return False if info == "is_readable" else None


class _CannedBackend(httpcore.NetworkBackend):
    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        return _CannedStream()


class _AsyncCannedStream(httpcore.AsyncNetworkStream):
    def __init__(self) -> None:
        self._stream = _CannedStream()

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes)

    async def aclose(self) -> None:
        self._stream.close()

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _AsyncCannedBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        return _AsyncCannedStream()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def memory_httpx_client() -> httpx.Client:
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(network_backend=_CannedBackend())
    return httpx.Client(transport=transport)


def memory_httpx_async_client() -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport()
    transport._pool = httpcore.AsyncConnectionPool(network_backend=_AsyncCannedBackend())
    return httpx.AsyncClient(transport=transport)


class _CannedSocket:
    """What http.client and urllib3 use of a connected socket, with the canned response behind `makefile`."""

    def sendall(self, data: bytes) -> None:
        return None

    def makefile(self, mode: str = "rb", buffering: int = -1) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(_RESPONSE))

    def settimeout(self, timeout: float | None) -> None:
        return None

    def setsockopt(self, *args: Any) -> None:
        return None

    def close(self) -> None:
        return None


class _CannedConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> Any:
        return _CannedSocket()

    @property
    def is_connected(self) -> bool:
        return self.sock is not None


class _CannedPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _CannedConnection


def memory_requests_session() -> requests.Session:
    session = requests.Session()
    adapter = session.get_adapter("http://")
    adapter.poolmanager.pool_classes_by_scheme = {"http": _CannedPool}  # type: ignore[attr-defined]
    return session


# ----------------------------------------------------------------------------------------- instrumentation


def providers() -> tuple[TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        BatchSpanProcessor(NullExporter(), max_queue_size=1_000_000, max_export_batch_size=4096)
    )
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


class Variant:
    """A name plus how to switch its instrumentation on and off around a timed batch."""

    def __init__(self, name: str, on: Callable[[], None], off: Callable[[], None]) -> None:
        self.name, self.on, self.off = name, on, off


class SpanFloor:
    """The tracing calls every instrumentation of one request has to make, and nothing else: a CLIENT span
    started with the 4 attributes veil sets at start (method, url.full, server.address, server.port),
    propagation injected, the span current (nested HTTP suppressed) around the call, the 2 response attributes
    and `end()`. No metrics: `metrics_record_cost` times veil's metric recording on its own.

    veil's overhead minus this one and minus the metric recording is veil's own code.
    """

    def __init__(self, tracer_provider: TracerProvider) -> None:
        self.tracer = tracer_provider.get_tracer("bench.span_floor")

    def begin(self, method: str, url: str, host: str, port: int, headers: Any) -> tuple[Any, object]:
        span = self.tracer.start_span(
            method,
            kind=SpanKind.CLIENT,
            attributes={HTTP_REQUEST_METHOD: method, URL_FULL: url, SERVER_ADDRESS: host, SERVER_PORT: port},
        )
        context = trace.set_span_in_context(span)
        propagate.inject(headers, context=context)
        return span, otel_context.attach(otel_context.set_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, context))

    @staticmethod
    def end(begun: tuple[Any, object], status: int) -> None:
        span, token = begun
        otel_context.detach(token)  # type: ignore[arg-type]
        span.set_attributes({HTTP_RESPONSE_STATUS_CODE: status, NETWORK_PROTOCOL_VERSION: "1.1"})
        span.end()

    def variant(self, library: str) -> Variant:
        """Wraps what veil wraps (`Client.send`, `AsyncClient.send`, `Session.send`) with wrapt, as veil does."""
        if library == "httpx":

            def sync_send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                request = args[0]
                url = request.url
                host, port = url.host, url.port
                begun = self.begin(request.method, str(url), host, port, request.headers)
                response = wrapped(*args, **kwargs)
                self.end(begun, response.status_code)
                return response

            async def async_send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                request = args[0]
                url = request.url
                host, port = url.host, url.port
                begun = self.begin(request.method, str(url), host, port, request.headers)
                response = await wrapped(*args, **kwargs)
                self.end(begun, response.status_code)
                return response

            def on() -> None:
                wrapt.wrap_function_wrapper(httpx.Client, "send", sync_send)
                wrapt.wrap_function_wrapper(httpx.AsyncClient, "send", async_send)

            def off() -> None:
                unwrap(httpx.Client, "send")
                unwrap(httpx.AsyncClient, "send")

            return Variant("span-floor", on, off)

        def session_send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            request = args[0]
            host, _, port = request.url.split("/", 3)[2].partition(":")
            begun = self.begin(request.method, request.url, host, int(port), request.headers)
            response = wrapped(*args, **kwargs)
            self.end(begun, response.status_code)
            return response

        return Variant(
            "span-floor",
            lambda: wrapt.wrap_function_wrapper(requests.Session, "send", session_send),
            lambda: unwrap(requests.Session, "send"),
        )


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
    result.append(SpanFloor(tracer_provider).variant(library))
    return result


def verify(name: str, library: str, one_call: Callable[[], Any]) -> None:
    """Each variant, once: one CLIENT span per request (none for bare) and the canned body read back."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    calls = 3
    for variant in variants(library, tracer_provider, meter_provider):
        exporter.clear()
        variant.on()
        try:
            for _ in range(calls):
                status, body = one_call()
                assert (status, body) == (200, b"ok"), f"{name} {variant.name}: got {status} {body!r}"
        finally:
            variant.off()
        spans = exporter.get_finished_spans()
        expected = 0 if variant.name == "bare" else calls  # veil, contrib and the SDK floor: one each
        kinds = [span.kind for span in spans]
        assert kinds == [SpanKind.CLIENT] * expected, f"{name} {variant.name}: spans {kinds}, want {expected} CLIENT"
    tracer_provider.shutdown()
    meter_provider.shutdown()


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


def metrics_record_cost(
    tracer_provider: TracerProvider, meter_provider: MeterProvider, count: int, rounds: int
) -> float:
    """Median time of one `record()` of veil's client metrics (duration and response size, as for the
    canned GET), in a recording span's context as on the request path. Out of the request path, so a
    lower bound of what it costs inside it.
    """
    from veil.instrumentation._http import client_telemetry

    telemetry = client_telemetry(
        "httpx", "bench.metrics", {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    )
    span = tracer_provider.get_tracer("bench.metrics").start_span("GET", kind=SpanKind.CLIENT)
    context = trace.set_span_in_context(span)
    attributes: dict[str, Any] = {
        HTTP_REQUEST_METHOD: "GET",
        SERVER_ADDRESS: "127.0.0.1",
        SERVER_PORT: 8080,
        HTTP_RESPONSE_STATUS_CODE: 200,
        NETWORK_PROTOCOL_VERSION: "1.1",
    }
    record = telemetry.metrics.record
    size = len(_RESPONSE_BODY)
    cost = statistics.median(
        time_sync(lambda: record(0.0004, None, size, attributes, None, context), count) for _ in range(rounds)
    )
    span.end()
    return cost


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
    floor_overhead = medians["span-floor"] - medians["bare"]
    metrics = metrics_record_cost(tracer_provider, meter_provider, count, rounds)
    ratio = veil_overhead / contrib_overhead if contrib_overhead > 0 else float("nan")
    own = veil_overhead - floor_overhead - metrics
    print(
        f"  veil/contrib overhead ratio: {ratio:.2f}; metrics record {metrics * 1e6:.1f} us; "
        f"veil's own code (veil - span-floor - metrics record): {own * 1e6:.1f} us"
    )
    return {
        "veil": veil_overhead,
        "contrib": contrib_overhead,
        "floor": floor_overhead,
        "metrics": metrics,
        "own": own,
        "ratio": ratio,
        "bare": medians["bare"],
    }


def run_transport(
    transport: str, tracer_provider: TracerProvider, meter_provider: MeterProvider, rounds: int, count: int
) -> dict[str, dict[str, float]]:
    """The three scenarios over one transport; returns scenario -> overheads and ratio."""
    server: subprocess.Popen[str] | None = None
    if transport == "loopback":
        port, server = start_server()
        url = f"http://127.0.0.1:{port}{_TARGET}"
        sync_client, async_client, session = httpx.Client(), httpx.AsyncClient(), requests.Session()
    else:
        url = f"http://127.0.0.1:8080{_TARGET}"  # never connected to
        sync_client, async_client = memory_httpx_client(), memory_httpx_async_client()
        session = memory_requests_session()
    loop = asyncio.new_event_loop()

    def sync_get() -> tuple[int, bytes]:
        response = sync_client.get(url)
        return response.status_code, response.content

    def async_get() -> tuple[int, bytes]:
        async def get() -> tuple[int, bytes]:
            response = await async_client.get(url)
            return response.status_code, response.content

        return loop.run_until_complete(get())

    def requests_get() -> tuple[int, bytes]:
        response = session.get(url)
        return response.status_code, response.content

    print(f"\n=== transport: {transport} ===")
    verify("httpx sync", "httpx", sync_get)
    verify("httpx async", "httpx", async_get)
    verify("requests", "requests", requests_get)
    print("checked: one CLIENT span per request for veil and contrib, none bare")

    results: dict[str, dict[str, float]] = {}
    results["httpx (sync)"] = run_scenario(
        "httpx sync: Client.get",
        "httpx",
        lambda n: time_sync(lambda: sync_client.get(url), n),
        tracer_provider,
        meter_provider,
        rounds,
        count,
    )
    results["httpx (async)"] = run_scenario(
        "httpx async: AsyncClient.get",
        "httpx",
        lambda n: time_async(loop, lambda: async_client.get(url), n),
        tracer_provider,
        meter_provider,
        rounds,
        count,
    )
    results["requests"] = run_scenario(
        "requests: Session.get",
        "requests",
        lambda n: time_sync(lambda: session.get(url), n),
        tracer_provider,
        meter_provider,
        rounds,
        count,
    )
    sync_client.close()
    loop.run_until_complete(async_client.aclose())
    loop.close()
    session.close()
    if server is not None:
        server.terminate()
        server.wait(5)
    return results


_TARGETS = {"httpx (sync)": 1 / 3, "httpx (async)": 1 / 3, "requests": 1 / 2}


def print_table(transport: str, results: dict[str, dict[str, float]]) -> None:
    print(f"\n{transport} transport")
    print(
        "\n| scenario | bare µs/req | veil overhead µs | contrib overhead µs | veil/contrib | target "
        "| span floor µs | veil metrics µs | veil own µs |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, result in results.items():
        target = _TARGETS[name]
        verdict = "met" if result["ratio"] <= target else "NOT met"
        print(
            f"| {name} | {result['bare'] * 1e6:.1f} | {result['veil'] * 1e6:.1f} | {result['contrib'] * 1e6:.1f} "
            f"| {result['ratio']:.2f} | ≤ {target:.2f} ({verdict}) | {result['floor'] * 1e6:.1f} "
            f"| {result['metrics'] * 1e6:.1f} | {result['own'] * 1e6:.1f} |"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--transport", choices=("memory", "loopback", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=300)
    arguments = parser.parse_args(argv)
    rounds, count = arguments.rounds, arguments.requests
    transports = ("memory", "loopback") if arguments.transport == "both" else (arguments.transport,)

    tracer_provider, meter_provider = providers()
    floor_time = statistics.median(floor(tracer_provider, count) for _ in range(rounds))
    print(f"floor: one bare SDK span with 10 attributes through the BatchSpanProcessor: {floor_time * 1e6:.1f} us")

    tables = {
        transport: run_transport(transport, tracer_provider, meter_provider, rounds, count) for transport in transports
    }
    for transport, results in tables.items():
        print_table(transport, results)
    print(f"\nfloor (bare span, 10 attributes): {floor_time * 1e6:.1f} µs")
    tracer_provider.shutdown()


if __name__ == "__main__":
    main()
