"""Cost on the calling thread of veil.audit(), and of the request-level attack signals on a benign request.

Run: python benchmarks/bench_security_events.py [--calls 20000] [--rounds 15] [--requests 2000]

One process, one run, interleaved rounds, medians. `veil.audit()` part: each round times `calls` calls inside a
sampled span of (a) a bare Python function with the same arguments (the floor), (b) `veil.audit()` with the OTLP
log pipeline only (a batch processor whose exporter drops the batches), (c) the same plus the hash-chained audit
file and an ECS JSON-lines sink (both written by their own threads, which share the GIL with the caller: their
cost shows in the wall column; the CPU column is the calling thread's own time). Queues are sized so that
nothing is dropped (a dropped event would be cheaper).
"""

from __future__ import annotations

import argparse
import gc
import io
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult

import veil
from veil.security.audit import audit


class NullExporter(LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def bare(
    action: str, *, actor: object = None, target: object = None, outcome: str = "success", **extra: object
) -> None:
    return None


def configure(directory: str, with_outputs: bool, queue: int) -> veil.Telemetry:
    outputs = {}
    if with_outputs:
        outputs = {
            "audit_file": os.path.join(directory, "audit.jsonl"),
            "audit_key": "benchmark-checkpoint-key",
            "security_sinks": "jsonl:" + os.path.join(directory, "security.jsonl"),
        }
    telemetry = veil.configure(
        force=True, auto_instrument=False, traces_exporter="none", security_sink_queue_size=queue, **outputs
    )
    assert telemetry.logger_provider is not None and telemetry.tracer_provider is not None
    telemetry.logger_provider.add_log_record_processor(BatchLogRecordProcessor(NullExporter(), max_queue_size=queue))
    return telemetry


def audit_benchmark(calls: int, rounds: int) -> None:
    directory = tempfile.mkdtemp(prefix="veil-bench-audit-")
    setups: dict[str, Callable[[], veil.Telemetry | None]] = {
        "bare function (floor)": lambda: None,
        "veil.audit, OTLP log only": lambda: configure(directory, False, calls * 2),
        "veil.audit + audit file + JSON lines": lambda: configure(directory, True, calls * 2),
    }
    functions = {"bare function (floor)": bare}

    def run(function: Callable[..., None]) -> tuple[float, float]:
        with trace.get_tracer("bench").start_as_current_span("request"):
            start, cpu = time.perf_counter(), time.thread_time()
            for number in range(calls):
                function("role.grant", actor="alice", target="user:42", role="admin", ticket=number)
            return (time.perf_counter() - start) / calls * 1e6, (time.thread_time() - cpu) / calls * 1e6

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    for round_number in range(rounds + 1):
        for name, setup in setups.items():
            telemetry = setup()
            elapsed = run(functions.get(name, audit))
            if telemetry is not None:
                telemetry.force_flush(60_000)
                lost = telemetry.health().logs.lost
                assert lost == 0, f"{name}: {lost} events lost; raise the queue size"
            if round_number:  # the first round warms up
                results[name].append(elapsed)
    veil.telemetry.reset_for_tests()
    floor = [statistics.median(value[index] for value in results["bare function (floor)"]) for index in (0, 1)]
    print(f"veil.audit(): {calls} calls x {rounds} interleaved rounds, median microseconds per call")
    print("wall: elapsed on the caller, including the GIL time veil's threads take meanwhile;")
    print("thread CPU: the calling thread's own CPU time (time.thread_time)\n")
    print(f"{'setup':40} {'wall':>8} {'added':>8} {'CPU':>8} {'added':>8}")
    for name, values in results.items():
        wall, cpu = (statistics.median(value[index] for value in values) for index in (0, 1))
        print(f"{name:40} {wall:8.2f} {wall - floor[0]:8.2f} {cpu:8.2f} {cpu - floor[1]:8.2f}")


# ------------------------------------------------------------------------------- request-level signals
# The same veil-instrumented hello-world app (Flask over raw WSGI calls, FastAPI over raw ASGI calls, as in
# bench_server.py and bench_asgi.py), three ways, interleaved: no observer (the server path does not open a
# security scope), a no-op observer (the scope alone, issue 14's part), and veil's RequestSignals. Benign
# requests: a browser user agent, a path and a query with no marker; once the same request each time, once with
# a new query string each time (the signals remember benign targets, 4096 at most). The signals' cost is
# signals - off.
# Times are the benchmark thread's CPU time (time.thread_time): on a machine shared with other jobs, wall
# time varies by more than the microseconds measured here. The observer is also timed alone, on a prebuilt
# benign scope, which isolates the signals' own code from the framework's.


class NoOpObserver:
    def on_request_start(self, scope: Any) -> None:
        return None

    def on_request_end(self, scope: Any) -> None:
        return None


def _providers() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NullSpans(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(NullSpans(), max_queue_size=1_000_000))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


pages = itertools.count(3)  # a query never seen before: the signals' remembered benign targets do not help
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0"


def flask_runner(new_targets: bool = False) -> Callable[[int], float]:
    from flask import Flask

    from veil.instrumentation.flask import FlaskInstrumentor

    app = Flask("bench")

    @app.route("/hello/<name>")
    def hello(name: str) -> str:
        return f"hello {name}"

    tracer_provider, meter_provider = _providers()
    FlaskInstrumentor.instrument_app(app, tracer_provider=tracer_provider, meter_provider=meter_provider)
    template = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/hello/world",
        "QUERY_STRING": "lang=en&page=2",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": AGENT,
        "HTTP_ACCEPT": "text/html",
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[..., None]:
        return lambda data: None

    def run(count: int) -> float:
        start = time.thread_time()
        for _ in range(count):
            environ = dict(template)
            environ["wsgi.input"] = io.BytesIO(b"")
            if new_targets:
                environ["QUERY_STRING"] = f"lang=en&page={next(pages)}"
            body = app(environ, start_response)
            for _chunk in body:
                pass
            body.close()  # type: ignore[attr-defined]
        return (time.thread_time() - start) / count * 1e6

    return run


def fastapi_runner(new_targets: bool = False) -> Callable[[int], float]:
    import asyncio

    from fastapi import FastAPI

    from veil.instrumentation.fastapi import FastAPIInstrumentor

    app = FastAPI()

    @app.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"message": f"hello {name}"}

    tracer_provider, meter_provider = _providers()
    FastAPIInstrumentor.instrument_app(app, tracer_provider=tracer_provider, meter_provider=meter_provider)
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", AGENT.encode()), (b"accept", b"*/*")]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        return None

    async def requests(count: int) -> float:
        start = time.thread_time()
        for _ in range(count):
            scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/hello/world",
                "raw_path": b"/hello/world",
                "root_path": "",
                "query_string": f"lang=en&page={next(pages)}".encode() if new_targets else b"lang=en&page=2",
                "headers": headers,
                "client": ("127.0.0.1", 50000),
                "server": ("127.0.0.1", 8000),
                "state": {},
            }
            await app(scope, receive, send)
        return (time.thread_time() - start) / count * 1e6

    loop = asyncio.new_event_loop()
    return lambda count: loop.run_until_complete(requests(count))


def signals_benchmark(requests: int, rounds: int) -> None:
    from veil.security.request import add_request_observer
    from veil.security.signals import RequestSignals

    observers: dict[str, Callable[[], Any] | None] = {
        "off": None,
        "scope only": NoOpObserver,
        "signals": RequestSignals,
    }
    for framework, runner in (
        ("flask", flask_runner()),
        ("fastapi", fastapi_runner()),
        ("flask, a new query string each request,", flask_runner(new_targets=True)),
        ("fastapi, a new query string each request,", fastapi_runner(new_targets=True)),
    ):
        results: dict[str, list[float]] = {name: [] for name in observers}
        names = list(observers)
        for round_number in range(rounds + 1):
            order = names[round_number % len(names) :] + names[: round_number % len(names)]
            for name in order:
                factory = observers[name]
                remove = add_request_observer(factory()) if factory is not None else None
                gc.collect()
                elapsed = runner(requests)
                if remove is not None:
                    remove()
                if round_number:
                    results[name].append(elapsed)
        medians = {name: statistics.median(values) for name, values in results.items()}
        print(f"\n{framework} hello-world, {rounds} interleaved rounds x {requests} benign requests (median us)")
        for name, median in medians.items():
            print(f"  {name:12} {median:8.2f} us   +{median - medians['off']:6.2f} us over off")
        # The spread of the per-round differences says how far the medians can be trusted on this machine.
        differences = [on - scope for on, scope in zip(results["signals"], results["scope only"], strict=True)]
        low, _, high = statistics.quantiles(differences, n=4)
        print(f"  signals over scope only: +{medians['signals'] - medians['scope only']:.2f} us")
        print(
            f"  per round, signals - scope only: median {statistics.median(differences):.2f},"
            f" interquartile range {low:.2f} to {high:.2f} us"
        )
    observer_alone(rounds)


def observer_alone(rounds: int, calls: int = 100_000) -> None:
    from veil.security.request import RequestScope
    from veil.security.signals import RequestSignals

    signals = RequestSignals()
    scope = RequestScope(
        method="GET",
        route="/hello/<name>",
        target="/hello/world?lang=en&page=2",
        client_address="127.0.0.1",
        headers={"host": "127.0.0.1:8000", "user-agent": AGENT},
        user_agent=AGENT,
        server_span=None,
        status_code=200,
    )
    signals.on_request_start(scope)  # the agent is now known, as after a browser's first request
    # The same benign request each time (its target is remembered), and a new target each time (the first 4096
    # are remembered, the others are not: the cheap tests run on every one of them).
    fresh = [
        RequestScope(
            method="GET",
            route="/hello/<name>",
            target=f"/hello/world?lang=en&page={number}",
            client_address="127.0.0.1",
            headers={"host": "127.0.0.1:8000", "user-agent": AGENT},
            user_agent=AGENT,
            server_span=None,
            status_code=200,
        )
        for number in range(calls)
    ]
    new_target = "on_request_start + on_request_end, new target"
    timings: dict[str, list[float]] = {"empty loop": [], "on_request_start + on_request_end": [], new_target: []}
    for _ in range(rounds):
        start = time.thread_time()
        for _ in range(calls):
            pass
        timings["empty loop"].append((time.thread_time() - start) / calls * 1e6)
        start = time.thread_time()
        for _ in range(calls):
            signals.on_request_start(scope)
            signals.on_request_end(scope)
        timings["on_request_start + on_request_end"].append((time.thread_time() - start) / calls * 1e6)
        start = time.thread_time()
        for each in fresh:
            signals.on_request_start(each)
            signals.on_request_end(each)
        timings[new_target].append((time.thread_time() - start) / calls * 1e6)
    print(f"\nRequestSignals alone on a benign scope, {rounds} rounds x {calls} calls (median us, thread CPU)")
    for name, values in timings.items():
        print(f"  {name:48} {statistics.median(values):6.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    command = f"--calls {args.calls} --rounds {args.rounds} --requests {args.requests}"
    print(f"$ python benchmarks/bench_security_events.py {command}")
    print("load average at the start: " + " ".join(f"{value:.2f}" for value in os.getloadavg()) + "\n")
    audit_benchmark(args.calls, args.rounds)
    signals_benchmark(args.requests, args.rounds)


if __name__ == "__main__":
    main()
