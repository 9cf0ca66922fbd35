"""VeilASGIMiddleware with raw ASGI applications: in process (raw calls, httpx.ASGITransport) and under uvicorn."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation.apps.support import (
    MALFORMED_TRACEPARENTS,
    RANDOM_TRACEPARENT,
    Captured,
    asgi_client,
    assert_captured_headers,
    assert_continues_the_inbound_trace,
    assert_exception_recorded_once,
    assert_method_other,
    assert_new_trace,
    assert_served_middleware_traces,
)
from veil.instrumentation.asgi import FIRST_BYTE_EVENT, ASGIInstrumentor, VeilASGIMiddleware

Message = dict[str, Any]


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        raise AssertionError("lifespan must pass through untouched")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"set-cookie", b"sid=secret; Path=/")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello"})


def http_scope(path: str = "/", query: bytes = b"", method: str = "GET", **headers: str) -> dict[str, Any]:
    raw = [(b"host", b"example.test:8080")]
    raw += [(name.replace("_", "-").lower().encode(), value.encode()) for name, value in headers.items()]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": raw,
        "client": ("10.0.0.7", 50123),
        "server": ("127.0.0.1", 8080),
    }


class Driver:
    """Calls an ASGI app by hand, recording every message it sends."""

    def __init__(self, incoming: list[Message] | None = None) -> None:
        self.sent: list[Message] = []
        self.incoming = list(incoming or [{"type": "http.request", "body": b"", "more_body": False}])

    async def receive(self) -> Message:
        if self.incoming:
            return self.incoming.pop(0)
        await asyncio.sleep(3600)  # like a server: nothing more until the client goes away
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def run(app: Any, scope: dict[str, Any], driver: Driver | None = None) -> Driver:
    driver = driver or Driver()
    asyncio.run(app(scope, driver.receive, driver.send))
    return driver


def test_one_server_span_with_stable_attributes_and_metrics(captured: Captured) -> None:
    app = VeilASGIMiddleware(hello, **captured.providers)
    run(app, http_scope("/items", b"token=abc&page=2&flag", user_agent="ua/1", content_length="0"))
    span = captured.only_span()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET"  # raw ASGI has no route template: never the raw path
    assert dict(span.attributes) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "url.path": "/items",
        "url.query": "token=REDACTED&page=2&flag",
        "server.address": "example.test",
        "server.port": 8080,
        "client.address": "10.0.0.7",
        "network.protocol.version": "1.1",
        "user_agent.original": "ua/1",
        "http.response.status_code": 200,
    }
    assert span.status.status_code is StatusCode.UNSET
    (duration,) = captured.points("http.server.request.duration")
    assert duration.count == 1
    assert dict(duration.attributes) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
    }
    assert duration.exemplars and duration.exemplars[0].span_id == span.context.span_id
    (response_size,) = captured.points("http.server.response.body.size")
    assert response_size.sum == len(b"hello")
    (request_size,) = captured.points("http.server.request.body.size")
    assert request_size.sum == 0
    active = captured.points("http.server.active_requests")
    assert [point.value for point in active] == [0]


def test_forwarded_client_and_server_fallback(captured: Captured) -> None:
    scope = http_scope(x_forwarded_for="203.0.113.9, 10.0.0.1")
    scope["headers"] = [pair for pair in scope["headers"] if pair[0] != b"host"]
    run(VeilASGIMiddleware(hello, **captured.providers), scope)
    attributes = captured.only_span().attributes
    assert attributes["client.address"] == "203.0.113.9"
    assert attributes["network.peer.address"] == "10.0.0.7"
    assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", 8080)


def test_dup_mode_adds_the_old_attribute_names(captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http/dup")
    run(VeilASGIMiddleware(hello, **captured.providers), http_scope("/old", b"a=1"))
    attributes = captured.only_span().attributes
    assert attributes["http.request.method"] == attributes["http.method"] == "GET"
    assert attributes["http.target"] == "/old?a=1"
    assert attributes["http.status_code"] == attributes["http.response.status_code"] == 200
    assert [point.count for point in captured.points("http.server.duration")] == [1]


def test_lifespan_and_unknown_scopes_pass_through(captured: Captured) -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = VeilASGIMiddleware(app, **captured.providers)
    asyncio.run(middleware({"type": "lifespan"}, Driver().receive, Driver().send))
    asyncio.run(middleware({"type": "custom"}, Driver().receive, Driver().send))
    assert seen == ["lifespan", "custom"]
    assert captured.spans() == ()


def test_streaming_span_ends_after_the_last_chunk_not_the_first(captured: Captured) -> None:
    marks: dict[str, int] = {}

    async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(3):
            await send({"type": "http.response.body", "body": b"chunk", "more_body": True})
            assert captured.spans() == (), f"span ended after chunk {index}"
            await asyncio.sleep(0.01)
        marks["before_last"] = time.time_ns()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        marks["after_last"] = time.time_ns()

    run(VeilASGIMiddleware(stream, first_byte_event=True, **captured.providers), http_scope())
    span = captured.only_span()
    assert span.start_time is not None and span.end_time is not None
    assert marks["before_last"] <= span.end_time <= marks["after_last"]
    (event,) = span.events
    assert event.name == FIRST_BYTE_EVENT
    assert span.start_time <= event.timestamp < marks["before_last"]
    (response_size,) = captured.points("http.server.response.body.size")
    assert response_size.sum == 15


def test_response_with_trailers_ends_after_the_last_trailers(captured: Captured) -> None:
    order: list[str] = []

    async def with_trailers(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data", "more_body": False})
        order.append(f"body sent, spans={len(captured.spans())}")
        await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")], "more_trailers": False})
        order.append(f"trailers sent, spans={len(captured.spans())}")

    run(VeilASGIMiddleware(with_trailers, **captured.providers), http_scope())
    assert order == ["body sent, spans=0", "trailers sent, spans=1"]


def test_span_ends_before_work_done_after_the_response(captured: Captured) -> None:
    ended_before_background: list[bool] = []

    async def with_background(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await hello(scope, receive, send)
        ended_before_background.append(len(captured.spans()) == 1)  # e.g. Starlette background tasks

    run(VeilASGIMiddleware(with_background, **captured.providers), http_scope())
    assert ended_before_background == [True]
    assert len(captured.spans()) == 1


def test_client_disconnect_mid_stream_ends_the_span_once(captured: Captured) -> None:
    async def stream_until_disconnect(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        message = await receive()
        assert message["type"] == "http.disconnect"  # the client went away: stop streaming

    driver = Driver([{"type": "http.disconnect"}])
    run(VeilASGIMiddleware(stream_until_disconnect, **captured.providers), http_scope(), driver)
    span = captured.only_span()
    assert span.attributes["http.response.status_code"] == 200
    assert span.status.status_code is StatusCode.UNSET
    (duration,) = captured.points("http.server.request.duration")
    assert duration.count == 1


def test_exception_before_response_recorded_once_as_500_and_reraised_untouched(captured: Captured) -> None:
    error = ValueError("boom")

    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise error

    with pytest.raises(ValueError, match="boom") as raised:
        run(VeilASGIMiddleware(failing, **captured.providers), http_scope())
    assert raised.value is error
    span = captured.only_span()
    assert span.attributes["http.response.status_code"] == 500
    assert_exception_recorded_once(span, "ValueError")
    (duration,) = captured.points("http.server.request.duration")
    assert duration.attributes["error.type"] == "ValueError"


def test_error_response_then_exception_is_recorded_once(captured: Captured) -> None:
    """Starlette's ServerErrorMiddleware sends the 500 and then re-raises: one span, one exception event."""

    async def answer_then_raise(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"Internal Server Error"})
        raise KeyError("lost")

    with pytest.raises(KeyError):
        run(VeilASGIMiddleware(answer_then_raise, **captured.providers), http_scope())
    span = captured.only_span()
    assert span.attributes["error.type"] == "KeyError"
    assert span.attributes["http.response.status_code"] == 500
    assert [event.name for event in span.events] == ["exception"]


def test_exception_after_streaming_started_keeps_the_sent_status(captured: Captured) -> None:
    async def broken_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError):
        run(VeilASGIMiddleware(broken_stream, **captured.providers), http_scope())
    span = captured.only_span()
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.status.status_code is StatusCode.ERROR


def test_cancellation_is_not_an_error(captured: Captured) -> None:
    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        app = VeilASGIMiddleware(slow, **captured.providers)
        driver = Driver()
        task = asyncio.ensure_future(app(http_scope(), driver.receive, driver.send))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    span = captured.only_span()
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in span.attributes


def test_hooks_receive_redacted_request_info_and_the_response(captured: Captured) -> None:
    calls: list[Any] = []

    def request_hook(span: Any, info: Any) -> None:
        calls.append(("request", info.method, info.url, info.headers.get("x-request-id"), info.native["type"]))
        span.set_attribute("app.tenant", "acme")

    def response_hook(span: Any, info: Any, response: Any) -> None:
        calls.append(("response", response.status_code, response.headers.get("content-type")))

    app = VeilASGIMiddleware(hello, request_hook=request_hook, response_hook=response_hook, **captured.providers)
    run(app, http_scope("/p", b"sig=s3cret&x=1", x_request_id="r-1"))
    assert calls == [
        ("request", "GET", "http://example.test:8080/p?sig=REDACTED&x=1", "r-1", "http"),
        ("response", 200, "text/plain"),
    ]
    assert captured.only_span().attributes["app.tenant"] == "acme"


def test_raising_hooks_are_logged_once_and_never_break_the_request(
    captured: Captured, caplog: pytest.LogCaptureFixture
) -> None:
    def request_hook(span: Any, info: Any) -> None:
        raise RuntimeError("request hook bug")

    def response_hook(span: Any, info: Any, response: Any) -> None:
        raise RuntimeError("response hook bug")

    app = VeilASGIMiddleware(hello, request_hook=request_hook, response_hook=response_hook, **captured.providers)
    with caplog.at_level(logging.WARNING, logger="veil"):
        drivers = [run(app, http_scope()) for _ in range(3)]
    assert all(driver.sent[-1]["body"] == b"hello" for driver in drivers)
    assert len(captured.spans()) == 3
    hook_logs = [record for record in caplog.records if "hook" in record.getMessage()]
    assert len(hook_logs) == 2, [record.getMessage() for record in hook_logs]


def test_excluded_urls_are_not_traced(captured: Captured) -> None:
    app = VeilASGIMiddleware(hello, excluded_urls="healthz,/metrics$", **captured.providers)
    for path in ("/healthz", "/metrics", "/metrics/x"):
        assert run(app, http_scope(path)).sent[-1]["body"] == b"hello"
    assert [span.attributes["url.path"] for span in captured.spans()] == ["/metrics/x"]
    (duration,) = captured.points("http.server.request.duration")
    assert duration.count == 1


def test_header_capture_redacts_sensitive_values(captured: Captured) -> None:
    app = VeilASGIMiddleware(
        hello,
        capture_request_headers=[".*"],
        capture_response_headers=["set-cookie", "content-type"],
        sanitize_fields=["x-tenant"],
        **captured.providers,
    )
    run(app, http_scope(authorization="Bearer t0ken", cookie="sid=abc", x_tenant="acme", x_request_id="r1"))
    span = captured.only_span()
    assert_captured_headers(span)
    assert span.attributes["http.request.header.cookie"] == ("sid=[REDACTED]",)


@pytest.mark.usefixtures("veil_propagator")
def test_inbound_traceparent_is_continued_with_random_flag_and_tracestate(captured: Captured) -> None:
    scope = http_scope(traceparent=RANDOM_TRACEPARENT, tracestate="vendor=v1,other=o")
    run(VeilASGIMiddleware(hello, **captured.providers), scope)
    assert_continues_the_inbound_trace(captured.only_span())


@pytest.mark.parametrize("traceparent", MALFORMED_TRACEPARENTS)
@pytest.mark.usefixtures("veil_propagator")
def test_malformed_traceparent_starts_a_new_trace(
    captured: Captured, traceparent: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        driver = run(VeilASGIMiddleware(hello, **captured.providers), http_scope(traceparent=traceparent))
    assert driver.sent[-1]["body"] == b"hello"
    assert_new_trace(captured.only_span(), caplog)


def test_unknown_method_becomes_other(captured: Captured) -> None:
    run(VeilASGIMiddleware(hello, **captured.providers), http_scope(method="PURGE"))
    assert_method_other(captured.only_span())


def test_nested_middleware_gives_one_span(captured: Captured) -> None:
    app = VeilASGIMiddleware(VeilASGIMiddleware(hello, **captured.providers), **captured.providers)
    run(app, http_scope())
    assert len(captured.spans()) == 1
    (duration,) = captured.points("http.server.request.duration")
    assert duration.count == 1


def test_websocket_connection_is_one_span_without_metrics(captured: Captured) -> None:
    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message["text"].upper()})

    scope = http_scope("/ws")
    scope.update(type="websocket", scheme="ws")
    del scope["method"]
    incoming = [{"type": "websocket.connect"}]
    incoming += [{"type": "websocket.receive", "text": f"m{index}"} for index in range(5)]
    incoming += [{"type": "websocket.disconnect", "code": 1000}]
    driver = run(VeilASGIMiddleware(echo, **captured.providers), scope, Driver(incoming))
    assert [message.get("text") for message in driver.sent[1:]] == [f"M{index}" for index in range(5)]
    span = captured.only_span()
    assert span.name == "GET"
    assert span.attributes["url.scheme"] == "ws"
    assert span.attributes["network.protocol.name"] == "websocket"
    assert span.attributes["http.response.status_code"] == 101
    assert captured.points("http.server.request.duration") == []


def test_websocket_rejected_before_accept_is_403(captured: Captured) -> None:
    async def reject(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 1008})

    scope = http_scope("/ws")
    scope.update(type="websocket", scheme="ws")
    run(VeilASGIMiddleware(reject, **captured.providers), scope, Driver([{"type": "websocket.connect"}]))
    assert captured.only_span().attributes["http.response.status_code"] == 403


def test_500_concurrent_requests_keep_their_own_attributes(captured: Captured) -> None:
    async def echo_status(scope: dict[str, Any], receive: Any, send: Any) -> None:
        number = int(scope["path"].rsplit("/", 1)[1])
        await asyncio.sleep(0.001 * (number % 7))
        status = 200 + number % 3
        await send({"type": "http.response.start", "status": status, "headers": []})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": str(number).encode() * (number % 5 + 1)})

    app = VeilASGIMiddleware(echo_status, **captured.providers)

    async def main() -> None:
        async with asgi_client(app) as client:
            responses = await asyncio.gather(
                *(
                    client.get(f"/n/{number}", params={"q": number}, headers={"user-agent": f"ua-{number}"})
                    for number in range(500)
                )
            )
        assert [response.status_code for response in responses] == [200 + number % 3 for number in range(500)]

    asyncio.run(main())
    spans = captured.spans()
    assert len(spans) == 500
    for span in spans:
        number = int(span.attributes["url.path"].rsplit("/", 1)[1])
        assert span.attributes["url.query"] == f"q={number}"
        assert span.attributes["user_agent.original"] == f"ua-{number}"
        assert span.attributes["http.response.status_code"] == 200 + number % 3
        assert span.parent is None
    assert len({span.context.trace_id for span in spans}) == 500
    sizes = captured.points("http.server.response.body.size")
    assert sum(point.sum for point in sizes) == sum(len(str(n)) * (n % 5 + 1) for n in range(500))


def test_per_request_state_only(captured: Captured) -> None:
    app = VeilASGIMiddleware(hello, **captured.providers)
    before = {name: id(value) for name, value in vars(app).items()}
    telemetry_before = {slot: id(getattr(app._telemetry, slot)) for slot in type(app._telemetry).__slots__}
    for path in ("/a", "/b"):
        run(app, http_scope(path))
    assert {name: id(value) for name, value in vars(app).items()} == before
    assert {slot: id(getattr(app._telemetry, slot)) for slot in type(app._telemetry).__slots__} == telemetry_before
    assert [span.attributes["url.path"] for span in captured.spans()] == ["/a", "/b"]


def test_instrumentor_wraps_an_app_with_default_options(captured: Captured) -> None:
    instrumentor = ASGIInstrumentor()
    instrumentor.instrument(excluded_urls="skip", **captured.providers)
    try:
        app = ASGIInstrumentor.instrument_app(hello)
        assert isinstance(app, VeilASGIMiddleware)
        run(app, http_scope("/skip"))
        run(app, http_scope("/keep"))
    finally:
        instrumentor.uninstrument()
    assert [span.attributes["url.path"] for span in captured.spans()] == ["/keep"]


@pytest.mark.slow
def test_uvicorn_spans_reach_the_otlp_receiver(otlp_receiver: OTLPReceiver) -> None:
    argv = ["uvicorn", "--port", "{port}", "--host", "127.0.0.1", "tests.instrumentation.asgi_apps.asgi_app:app"]
    continued = assert_served_middleware_traces(argv, otlp_receiver, "asgi-e2e", "/stream")
    assert continued.attributes["http.response.status_code"] == 200
