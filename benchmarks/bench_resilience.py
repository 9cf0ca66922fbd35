"""Application latency with a healthy, a slow and a dead collector, side by side in one run.

A real threaded WSGI server (veil's WSGI middleware) whose handler calls its own `/leaf` with `requests`
(instrumented): 3 spans per request, exported over OTLP/HTTP by veil's default pipeline (queue 2048,
batch 512, 5 s schedule delay shortened to 200 ms so exports really happen during the measurement).
The collector is the test suite's real OTLP receiver, optionally behind a fault proxy:

* healthy  - answers at once;
* slow     - answers every export after 500 ms;
* dead     - accepts connections and never answers (black hole; each export fails after the 10 s budget);
* refused  - nothing listens (connection refused; retried with backoff within the budget).

Each round configures veil for each collector in turn (interleaved), warms up, then times `--requests`
sequential keep-alive requests. Reported: the median over rounds of each round's p50 and p99, the ratio to
healthy, and what health() counted.

    python benchmarks/bench_resilience.py [--rounds 5] [--requests 400]
"""

from __future__ import annotations

import argparse
import http.client
import logging
import statistics
import sys
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
from tests.fixtures.otlp import OTLPReceiver, ProgrammedResponse
from tests.resilience.faults import FaultProxy

import veil
from veil import telemetry as telemetry_module
from veil.instrumentation.wsgi import VeilWSGIMiddleware


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve() -> tuple[_Server, int]:
    session = requests.Session()
    leaf = ""

    def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] != "/leaf":
            session.get(leaf, timeout=5)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    server = make_server("127.0.0.1", 0, VeilWSGIMiddleware(application), server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = server.server_address[1]
    leaf = f"http://127.0.0.1:{port}/leaf"
    return server, port


def drive(port: int, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        connection.request("GET", "/work")
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
    connection.close()
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    logging.getLogger("veil").setLevel(logging.ERROR)

    receiver = OTLPReceiver().start()
    slow = OTLPReceiver().start()
    slow.program("traces", ProgrammedResponse(delay=0.5), times=None)
    dead = FaultProxy(receiver.http_port).start()
    dead.blackhole()
    refused = FaultProxy(receiver.http_port).start()
    refused.refuse()
    endpoints = {
        "healthy": receiver.http_endpoint,
        "slow": slow.http_endpoint,
        "dead": dead.url,
        "refused": refused.url,
    }
    server, port = serve()
    p50s: dict[str, list[float]] = {name: [] for name in endpoints}
    p99s: dict[str, list[float]] = {name: [] for name in endpoints}
    health: dict[str, Any] = {}
    for _ in range(args.rounds):
        for name, endpoint in endpoints.items():
            telemetry = veil.configure(
                force=True,
                service_name="bench",
                auto_instrument=False,
                traces_exporter="otlp",
                metrics_exporter="none",
                logs_exporter="none",
                otlp_endpoint=endpoint,
                otlp_protocol="http/protobuf",
                bsp_schedule_delay_millis=200,
                shutdown_timeout_millis=500,
            )
            veil.instrument("requests")
            drive(port, 50)
            latencies = drive(port, args.requests)
            p50s[name].append(percentile(latencies, 0.50))
            p99s[name].append(percentile(latencies, 0.99))
            telemetry.force_flush(300)
            health[name] = telemetry.health().traces
    telemetry_module.reset_for_tests()
    server.shutdown()

    print(f"{args.rounds} rounds x {args.requests} requests (3 spans each); median over rounds")
    print(f"{'collector':<10} {'p50 ms':>8} {'p99 ms':>8} {'p50 x':>7} {'p99 x':>7}   last round: health().traces")
    base50, base99 = statistics.median(p50s["healthy"]), statistics.median(p99s["healthy"])
    for name in endpoints:
        m50, m99 = statistics.median(p50s[name]), statistics.median(p99s[name])
        print(
            f"{name:<10} {m50 * 1000:8.3f} {m99 * 1000:8.3f} {m50 / base50:7.2f} {m99 / base99:7.2f}   {health[name]}"
        )


if __name__ == "__main__":
    main()
