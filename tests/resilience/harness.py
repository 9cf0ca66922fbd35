"""An instrumented application driven in-process: a real threaded WSGI server whose `/work` handler calls
its own `/leaf` with `requests`, so each request makes two SERVER spans and one CLIENT span."""

from __future__ import annotations

import http.client
import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests
from opentelemetry import trace

import veil
from veil.instrumentation.wsgi import VeilWSGIMiddleware

SPANS_PER_REQUEST = 3


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Latencies:
    seconds: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds)

    @property
    def worst(self) -> float:
        return max(self.seconds)


@dataclass
class App:
    port: int
    errors: list[BaseException]

    def drive(self, count: int) -> Latencies:
        """`count` sequential requests on one keep-alive connection; every answer must be 200 'ok'."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        latencies = []
        try:
            for _ in range(count):
                started = time.perf_counter()
                connection.request("GET", "/work")
                response = connection.getresponse()
                body = response.read()
                latencies.append(time.perf_counter() - started)
                assert (response.status, body) == (200, b"ok"), (response.status, body)
        finally:
            connection.close()
        assert not self.errors, self.errors
        return Latencies(latencies)


@contextmanager
def running_app() -> Iterator[App]:
    """Serve the app with the global (veil-configured) providers; `requests` must be instrumented."""
    errors: list[BaseException] = []
    session = requests.Session()
    downstream_url = ""

    def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/leaf":
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        try:
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attribute("test.pid", os.getpid())
            session.get(downstream_url, timeout=5).raise_for_status()
        except BaseException as error:
            errors.append(error)
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"error"]
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    server = make_server(
        "127.0.0.1",
        0,
        VeilWSGIMiddleware(application),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    downstream_url = f"http://127.0.0.1:{server.server_address[1]}/leaf"
    try:
        yield App(server.server_address[1], errors)
    finally:
        server.shutdown()
        server.server_close()
        session.close()


def telemetry_for(endpoint: str, protocol: str, **overrides: Any) -> dict[str, Any]:
    """configure() arguments for a small, quick pipeline exporting traces to `endpoint`."""
    arguments: dict[str, Any] = {
        "service_name": "resilience",
        "traces_exporter": "otlp",
        "metrics_exporter": "none",
        "logs_exporter": "none",
        "otlp_endpoint": endpoint,
        "otlp_protocol": protocol,
        "bsp_max_queue_size": 64,
        "bsp_max_export_batch_size": 16,
        "bsp_schedule_delay_millis": 50,
        "otlp_timeout_millis": 3000,
        "shutdown_timeout_millis": 3000,
    }
    arguments.update(overrides)
    return arguments


def wait_until(condition: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def settle(telemetry: veil.Telemetry, timeout: float = 15.0) -> None:
    """Wait until nothing is queued or in flight any more."""
    assert wait_until(lambda: telemetry.health().traces.queued == 0, timeout), telemetry.health()
