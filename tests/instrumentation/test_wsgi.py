"""VeilWSGIMiddleware in process (werkzeug's test client, hand-driven iteration) and under gunicorn."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.trace import SpanKind
from werkzeug.test import Client

from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation.apps.support import (
    MALFORMED_TRACEPARENTS,
    RANDOM_TRACEPARENT,
    Captured,
    assert_captured_headers,
    assert_continues_the_inbound_trace,
    assert_exception_recorded_once,
    assert_method_other,
    assert_new_trace,
    assert_served_middleware_traces,
)
from veil.instrumentation.wsgi import VeilWSGIMiddleware, WSGIInstrumentor

StartResponse = Callable[..., Any]


def hello(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "sid=secret; Path=/")])
    return [b"hello"]


def environ_for(path: str = "/", query: str = "", **headers: str) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.7",
        "wsgi.url_scheme": "http",
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper()] = value
    return environ


def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Callable[..., None]:
    return lambda data: None


def test_one_server_span_with_stable_attributes(captured: Captured) -> None:
    app = VeilWSGIMiddleware(hello, **captured.providers)
    response = Client(app).get("/items?token=abc&page=2&flag", headers={"User-Agent": "ua/1"})
    assert response.data == b"hello"
    span = captured.only_span()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET"  # no route template in plain WSGI: never the raw path
    assert dict(span.attributes) | {} == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "url.path": "/items",
        "url.query": "token=REDACTED&page=2&flag",
        "server.address": "localhost",
        "server.port": 80,
        "network.protocol.version": "1.1",
        "user_agent.original": "ua/1",
        "http.response.status_code": 200,
    }
    (duration,) = captured.points("http.server.request.duration")
    assert duration.attributes == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    assert duration.exemplars and duration.exemplars[0].span_id == span.context.span_id
    (size,) = captured.points("http.server.response.body.size")
    assert size.sum == 5


def test_streaming_ends_when_the_body_is_exhausted_not_at_the_first_chunk(captured: Captured) -> None:
    tracer = captured.tracer_provider.get_tracer("test")

    def stream(environ: dict[str, Any], start: StartResponse) -> Iterator[bytes]:
        start("200 OK", [("Content-Type", "text/event-stream")])
        yield b"data: 1\n\n"
        time.sleep(0.05)
        with tracer.start_as_current_span("inside-stream"):
            yield b"data: 2\n\n"

    app = VeilWSGIMiddleware(stream, **captured.providers)
    body = app(environ_for("/events"), start_response)
    iterator = iter(body)
    assert next(iterator) == b"data: 1\n\n"
    assert captured.spans() == ()
    assert next(iterator) == b"data: 2\n\n"
    with pytest.raises(StopIteration):
        next(iterator)
    inner, server = captured.spans()
    assert inner.parent is not None and inner.parent.span_id == server.context.span_id
    assert (server.end_time - server.start_time) >= 50_000_000
    (duration,) = captured.points("http.server.request.duration")
    assert duration.sum >= 0.05
    (size,) = captured.points("http.server.response.body.size")
    assert size.sum == 18


def test_close_without_exhaustion_ends_the_span_once(captured: Captured) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start: StartResponse) -> Body:
        start("200 OK", [])
        return Body()

    body = VeilWSGIMiddleware(app, **captured.providers)(environ_for(), start_response)
    assert next(iter(body)) == b"a"
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]
    assert closed == [True, True]
    assert len(captured.spans()) == 1
    (active,) = captured.points("http.server.active_requests")
    assert active.value == 0


def test_exception_is_recorded_once_reported_as_500_and_reraised(captured: Captured) -> None:
    error = ValueError("broken")

    def app(environ: dict[str, Any], start: StartResponse) -> list[bytes]:
        raise error

    outer = VeilWSGIMiddleware(VeilWSGIMiddleware(app, **captured.providers), **captured.providers)
    with pytest.raises(ValueError, match="broken") as raised:
        outer(environ_for(), start_response)
    assert raised.value is error
    span = captured.only_span()
    assert span.attributes[HTTP_RESPONSE_STATUS_CODE] == 500
    assert_exception_recorded_once(span, "ValueError")


def test_exception_while_iterating_is_recorded(captured: Captured) -> None:
    def app(environ: dict[str, Any], start: StartResponse) -> Iterator[bytes]:
        start("200 OK", [])
        yield b"partial"
        raise KeyError("later")

    body = VeilWSGIMiddleware(app, **captured.providers)(environ_for(), start_response)
    iterator = iter(body)
    next(iterator)
    with pytest.raises(KeyError):
        next(iterator)
    span = captured.only_span()
    assert span.attributes[ERROR_TYPE] == "KeyError"
    assert span.attributes[HTTP_RESPONSE_STATUS_CODE] == 200  # the status line had been sent


@pytest.mark.usefixtures("veil_propagator")
def test_inbound_traceparent_is_continued_with_random_flag_and_tracestate(captured: Captured) -> None:
    app = VeilWSGIMiddleware(hello, **captured.providers)
    list(app(environ_for(traceparent=RANDOM_TRACEPARENT, tracestate="vendor=v1,other=o"), start_response))
    assert_continues_the_inbound_trace(captured.only_span())


@pytest.mark.parametrize("traceparent", MALFORMED_TRACEPARENTS)
@pytest.mark.usefixtures("veil_propagator")
def test_malformed_traceparent_starts_a_new_trace(
    captured: Captured, traceparent: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = VeilWSGIMiddleware(hello, **captured.providers)
    with caplog.at_level(logging.WARNING):
        assert list(app(environ_for(traceparent=traceparent), start_response)) == [b"hello"]
    assert_new_trace(captured.only_span(), caplog)


def test_excluded_urls_are_not_traced(captured: Captured) -> None:
    app = VeilWSGIMiddleware(hello, excluded_urls="healthz,/metrics$", **captured.providers)
    assert list(app(environ_for("/healthz"), start_response)) == [b"hello"]
    assert list(app(environ_for("/metrics"), start_response)) == [b"hello"]
    assert list(app(environ_for("/metrics/x"), start_response)) == [b"hello"]
    assert [span.attributes["url.path"] for span in captured.spans()] == ["/metrics/x"]


def test_header_capture_with_redaction(captured: Captured) -> None:
    app = VeilWSGIMiddleware(
        hello,
        capture_request_headers=[".*"],
        capture_response_headers=["set-cookie", "content-type"],
        sanitize_fields=["x-tenant"],
        **captured.providers,
    )
    environ = environ_for(AUTHORIZATION="Bearer t0ken", X_TENANT="acme", X_REQUEST_ID="r1")
    list(app(environ, start_response))
    assert_captured_headers(captured.only_span())


def test_unknown_method_becomes_other(captured: Captured) -> None:
    environ = environ_for()
    environ["REQUEST_METHOD"] = "PURGE"
    list(VeilWSGIMiddleware(hello, **captured.providers)(environ, start_response))
    assert_method_other(captured.only_span())


def test_instrumentor_wraps_an_app_with_default_options(captured: Captured) -> None:
    instrumentor = WSGIInstrumentor()
    instrumentor.instrument(**captured.providers)
    try:
        app = WSGIInstrumentor.instrument_app(hello, excluded_urls="nothing-matches")
        list(app(environ_for("/x"), start_response))
    finally:
        instrumentor.uninstrument()
    assert captured.only_span().attributes["url.path"] == "/x"


def test_per_request_state_only(captured: Captured) -> None:
    app = VeilWSGIMiddleware(hello, **captured.providers)
    before = dict(vars(app))
    for path in ("/a", "/b"):
        list(app(environ_for(path), start_response))
    assert dict(vars(app)) == before
    assert [span.attributes["url.path"] for span in captured.spans()] == ["/a", "/b"]


@pytest.mark.slow
def test_gunicorn_spans_reach_the_otlp_receiver(otlp_receiver: OTLPReceiver) -> None:
    argv = ["gunicorn", "-w", "1", "-b", "127.0.0.1:{port}", "tests.instrumentation.apps.wsgi_app:application"]
    assert_served_middleware_traces(argv, otlp_receiver, "wsgi-e2e", "/hello")
