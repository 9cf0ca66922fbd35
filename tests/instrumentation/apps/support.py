"""Test support for the server instrumentations: providers, fixtures, span checks and real servers."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from tests.fixtures.otlp import OTLPReceiver, ReceivedSpan
from tests.instrumentation._recording import Recording, free_port, recording

__all__ = [
    "MALFORMED_TRACEPARENTS",
    "PARENT_ID",
    "RANDOM_TRACEPARENT",
    "TRACEPARENT",
    "TRACE_ID",
    "Captured",
    "ServerProcess",
    "asgi_client",
    "asgi_request",
    "assert_captured_headers",
    "assert_continued",
    "assert_continues_the_inbound_trace",
    "assert_exception_recorded_once",
    "assert_method_other",
    "assert_new_trace",
    "assert_served_middleware_traces",
    "assert_span_ends_with_the_stream",
    "captured_fixture",
    "free_port",
    "instrumented_fixture",
    "serve",
    "server_env",
    "server_spans",
    "veil_propagator_fixture",
]

ROOT = Path(__file__).resolve().parents[3]

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
RANDOM_TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-03"  # sampled + W3C Level 2 random-trace-id
MALFORMED_TRACEPARENTS = [
    "garbage",
    f"00-{'0' * 32}-{PARENT_ID}-01",
    f"00-{TRACE_ID}-{'0' * 16}-01",
    f"zz-{TRACE_ID}-{PARENT_ID}-01",
    f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",
]


class Captured(Recording):
    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.finished()

    def only_span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [span.name for span in spans]
        return spans[0]


@pytest.fixture(name="captured")
def captured_fixture() -> Iterator[Captured]:
    yield from recording(Captured, reset_settings=True)


def instrumented_fixture(make: Callable[[], Any]) -> Any:
    """An `instrumented` fixture: the `captured` providers with `make()` instrumented during the test."""

    @pytest.fixture(name="instrumented")
    def instrumented(captured: Captured) -> Iterator[Captured]:
        instrumentor = make()
        instrumentor.instrument(**captured.providers)
        yield captured
        instrumentor.uninstrument()

    return instrumented


@pytest.fixture(name="veil_propagator")
def veil_propagator_fixture() -> Iterator[None]:
    """veil's W3C trace-context propagator as the global one, for one test."""
    from opentelemetry import propagate

    from veil.propagation.tracecontext import TraceContextPropagator

    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(TraceContextPropagator())
    yield
    propagate.set_global_textmap(previous)


def asgi_client(app: Any, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    """An httpx client calling an ASGI app in process (base URL http://test)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def asgi_request(
    app: Any, path: str, method: str = "GET", *, raise_app_exceptions: bool = False, **kwargs: Any
) -> httpx.Response:
    """One request to an ASGI app in process; app exceptions become 500 answers unless told to raise."""

    async def main() -> httpx.Response:
        async with asgi_client(app, raise_app_exceptions=raise_app_exceptions) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(main())


def assert_exception_recorded_once(span: ReadableSpan, error_type: str) -> None:
    """An error span with one exception event and `error_type`."""
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == error_type
    assert [event.name for event in span.events] == ["exception"]


def assert_continues_the_inbound_trace(span: ReadableSpan) -> None:
    """The server span continues RANDOM_TRACEPARENT with the tracestate `vendor=v1,other=o`."""
    assert span.context.trace_id == int(TRACE_ID, 16)
    assert span.parent is not None and span.parent.span_id == int(PARENT_ID, 16)
    assert span.parent.is_remote
    assert span.context.trace_state.get("vendor") == "v1"
    assert span.context.trace_state.get("other") == "o"
    assert span.context.trace_flags & 0x02, "the random-trace-id flag survives into the server span"
    assert span.context.trace_flags.sampled


def assert_new_trace(span: ReadableSpan, caplog: pytest.LogCaptureFixture) -> None:
    """A malformed inbound traceparent: a new root span, and nothing logged as an error."""
    assert span.parent is None
    assert span.context.trace_id != int(TRACE_ID, 16)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def assert_method_other(span: ReadableSpan) -> None:
    """A request with the unknown method PURGE."""
    assert span.attributes is not None
    assert span.name == "HTTP"
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "PURGE"


def assert_captured_headers(span: ReadableSpan) -> None:
    """Headers captured with `.*` / `set-cookie, content-type` and `sanitize_fields=["x-tenant"]`."""
    attributes = span.attributes
    assert attributes is not None
    assert attributes["http.request.header.authorization"] == ("Bearer [REDACTED]",)
    assert attributes["http.request.header.x-tenant"] == ("[REDACTED]",)
    assert attributes["http.request.header.x-request-id"] == ("r1",)
    assert attributes["http.response.header.content-type"] == ("text/plain",)
    assert "secret" not in attributes["http.response.header.set-cookie"][0]  # type: ignore[index]


def assert_span_ends_with_the_stream(
    captured: Captured, chunks: Iterator[bytes], close: Callable[[], object], name: str
) -> None:
    """A two-event stream (`data: 1`, 50 ms, `data: 2`): the span ends when the response is closed."""
    assert next(chunks) == b"data: 1\n\n"
    assert captured.spans() == ()
    assert b"".join(chunks) == b"data: 2\n\n"
    close()
    span = captured.only_span()
    assert span.name == name
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time >= 50_000_000


class ServerProcess:
    """A real server (gunicorn / uvicorn) in a subprocess, stopped at the end of the test.

    As a context manager it stops the server on exit and keeps what it printed in `output`.
    """

    def __init__(self, argv: Sequence[str], port: int, env: dict[str, str]) -> None:
        full_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
        self.port = port
        self.output = ""
        self.process = subprocess.Popen(
            [sys.executable, "-m", *argv],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode() if self.process.stdout else ""
                raise AssertionError(f"server exited early:\n{output}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("server did not start within 20 s")

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.output = self.stop()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.process.stdout.read().decode() if self.process.stdout else ""


def server_env(otlp_endpoint: str, service: str) -> dict[str, str]:
    """Environment of a real-server subprocess exporting to the test OTLP receiver, quickly."""
    return {
        "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_PROPAGATORS": "tracecontext,baggage",
    }


def serve(argv: Sequence[str], otlp_receiver: OTLPReceiver, service: str) -> ServerProcess:
    """Start `python -m <argv>` ("{port}" in argv becomes a free port) exporting to `otlp_receiver`."""
    port = free_port()
    return ServerProcess(
        [part.format(port=port) for part in argv], port, server_env(otlp_receiver.http_endpoint, service)
    )


def server_spans(otlp_receiver: OTLPReceiver, count: int) -> list[ReceivedSpan]:
    """Wait for `count` SERVER spans at the receiver."""
    return otlp_receiver.wait_for_spans(count, timeout=15, predicate=lambda span: span.kind == "SERVER")


def assert_continued(span: ReceivedSpan, trace_state: str | None = None, output: str = "") -> None:
    """A received server span continued the inbound TRACE_ID / PARENT_ID (and `trace_state`, when given)."""
    assert span.trace_id == TRACE_ID, output
    assert span.parent_span_id == PARENT_ID
    if trace_state is not None:
        assert span.trace_state == trace_state


def assert_served_middleware_traces(
    argv: Sequence[str], otlp_receiver: OTLPReceiver, service: str, path: str
) -> ReceivedSpan:
    """A plain app behind veil's middleware, served for real, answering `hello world` on `path`.

    A request carrying RANDOM_TRACEPARENT continues that trace (query redacted); one with a broken
    traceparent starts a new one. Returns the continued span.
    """
    with serve(argv, otlp_receiver, service) as server:
        headers = {"traceparent": RANDOM_TRACEPARENT, "tracestate": "ro=1"}
        assert server.get(f"{path}?api_key=k&x=1", headers) == (200, b"hello world")
        assert server.get("/fresh", {"traceparent": "00-broken"})[0] == 200
        spans = server_spans(otlp_receiver, 2)
    by_path = {span.attributes["url.path"]: span for span in spans}
    continued = by_path[path]
    assert_continued(continued, "ro=1", server.output)
    assert continued.attributes["url.query"] == "api_key=REDACTED&x=1"
    assert continued.resource["service.name"] == service
    fresh = by_path["/fresh"]
    assert fresh.is_root and fresh.trace_id != TRACE_ID
    return continued
