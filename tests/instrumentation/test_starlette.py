"""StarletteInstrumentor: apps created before instrument(), route templates with mounts, one span, streaming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation.apps.support import (
    TRACEPARENT,
    Captured,
    assert_continued,
    assert_exception_recorded_once,
    instrumented_fixture,
    serve,
    server_spans,
)
from tests.instrumentation.apps.support import asgi_request as get
from veil.instrumentation.asgi import VeilASGIMiddleware
from veil.instrumentation.starlette import StarletteInstrumentor

MARKS: dict[str, int] = {}


async def item(request: Request) -> Response:
    return PlainTextResponse(f"item {request.path_params['item_id']}")


async def user(request: Request) -> Response:
    return PlainTextResponse(f"user {request.path_params['user_id']}")


async def boom(request: Request) -> Response:
    raise LookupError("no such thing")


async def events(request: Request) -> Response:
    async def generate() -> AsyncIterator[str]:
        for index in range(3):
            yield f"data: {index}\n\n"
            await asyncio.sleep(0.01)
        MARKS["last_event"] = time.time_ns()

    return StreamingResponse(generate(), media_type="text/event-stream")


async def background(request: Request) -> Response:
    def late() -> None:
        MARKS["background"] = time.time_ns()

    return PlainTextResponse("accepted", status_code=202, background=BackgroundTask(late))


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(text.upper())
    await websocket.close()


async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"raw"})


def make_app() -> Starlette:
    tenant_app = Starlette(routes=[Route("/items/{item_id:int}", item)])
    return Starlette(
        routes=[
            Route("/items/{item_id}", item),
            Route("/boom", boom),
            Route("/events", events),
            Route("/background", background, methods=["POST"]),
            WebSocketRoute("/ws/{room}", socket),
            Mount("/tenants/{tenant}", app=tenant_app),
            Mount("/api", routes=[Mount("/v1", routes=[Route("/users/{user_id}", user)])]),
            Mount("/raw", app=raw_asgi),
        ]
    )


# Created at import time, long before any test instruments Starlette: class-level patching must see it.
EARLY_APP = make_app()
instrumented = instrumented_fixture(StarletteInstrumentor)


def test_app_created_before_instrument_is_traced_with_its_route(instrumented: Captured) -> None:
    response = get(EARLY_APP, "/items/42?password=hunter2")
    assert response.text == "item 42"
    span = instrumented.only_span()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /items/{item_id}"
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["url.query"] == "password=REDACTED"
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "veil.instrumentation.starlette"
    (duration,) = instrumented.points("http.server.request.duration")
    assert duration.attributes["http.route"] == "/items/{item_id}"


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/tenants/acme/items/7", "/tenants/{tenant}/items/{item_id}"),
        ("/api/v1/users/u1", "/api/v1/users/{user_id}"),
        ("/raw/anything/below", "/raw/{path}"),
    ],
)
def test_mounted_routes_have_the_template_prefix_and_one_span(instrumented: Captured, path: str, route: str) -> None:
    assert get(EARLY_APP, path).status_code == 200
    span = instrumented.only_span()
    assert span.attributes["http.route"] == route
    assert span.name == f"GET {route}"
    assert span.attributes["url.path"] == path


def test_not_found_has_no_route(instrumented: Captured) -> None:
    assert get(EARLY_APP, "/nowhere/7").status_code == 404
    span = instrumented.only_span()
    assert span.name == "GET"
    assert "http.route" not in span.attributes
    assert span.status.status_code is StatusCode.UNSET


def test_unhandled_exception_recorded_once_answered_500_and_reraised(instrumented: Captured) -> None:
    with pytest.raises(LookupError, match="no such thing"):
        get(EARLY_APP, "/boom", raise_app_exceptions=True)
    span = instrumented.only_span()
    assert_exception_recorded_once(span, "LookupError")
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["http.route"] == "/boom"


def test_server_sent_events_end_the_span_after_the_last_event(instrumented: Captured) -> None:
    response = get(EARLY_APP, "/events")
    assert response.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    span = instrumented.only_span()
    assert span.end_time is not None
    assert span.end_time >= MARKS["last_event"]
    assert span.attributes["http.route"] == "/events"


def test_span_ends_before_the_background_task_runs(instrumented: Captured) -> None:
    assert get(EARLY_APP, "/background", method="POST").status_code == 202
    span = instrumented.only_span()
    assert span.end_time is not None
    assert span.end_time <= MARKS["background"]
    assert span.attributes["http.response.status_code"] == 202


def websocket_session(app: Any, path: str, texts: list[str]) -> list[dict[str, Any]]:
    """Drive a websocket connection by hand (raw ASGI messages), returning what the app sent."""
    incoming: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    incoming += [{"type": "websocket.receive", "text": text} for text in texts]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
    }
    asyncio.run(app(scope, receive, send))
    return sent


def test_websocket_connection_is_one_span_with_its_route(instrumented: Captured) -> None:
    sent = websocket_session(EARLY_APP, "/ws/lobby", ["hi"])
    assert [message["type"] for message in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "HI"
    span = instrumented.only_span()
    assert span.name == "GET /ws/{room}"
    assert span.attributes["network.protocol.name"] == "websocket"
    assert span.attributes["http.response.status_code"] == 101


def test_uninstrument_stops_tracing(captured: Captured) -> None:
    instrumentor = StarletteInstrumentor()
    instrumentor.instrument(**captured.providers)
    instrumentor.uninstrument()
    assert get(EARLY_APP, "/items/1").status_code == 200
    assert captured.spans() == ()
    assert not hasattr(Starlette.__call__, "__wrapped__")


def test_instrument_app_with_its_own_options(captured: Captured) -> None:
    app = make_app()
    other = make_app()
    seen: list[str] = []
    StarletteInstrumentor.instrument_app(
        app,
        excluded_urls="/items/2",
        response_hook=lambda span, request, response: seen.append(request.url),
        **captured.providers,
    )
    try:
        for path in ("/items/1", "/items/2"):
            assert get(app, path).status_code == 200
        assert get(other, "/items/3").status_code == 200  # not instrumented
    finally:
        StarletteInstrumentor.uninstrument_app(app)
    assert get(app, "/items/4").status_code == 200
    assert [span.attributes["url.path"] for span in captured.spans()] == ["/items/1"]
    assert seen == ["http://test/items/1"]


def test_excluded_urls_from_the_starlette_variable(captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_STARLETTE_EXCLUDED_URLS", "items/1$")
    instrumentor = StarletteInstrumentor()
    instrumentor.instrument(**captured.providers)
    try:
        get(EARLY_APP, "/items/1")
        get(EARLY_APP, "/items/11")
    finally:
        instrumentor.uninstrument()
    assert [span.attributes["url.path"] for span in captured.spans()] == ["/items/11"]


def test_generic_middleware_around_an_instrumented_app_gives_one_span_with_the_route(
    instrumented: Captured,
) -> None:
    app = VeilASGIMiddleware(EARLY_APP, **instrumented.providers)
    assert get(app, "/tenants/acme/items/3").status_code == 200
    span = instrumented.only_span()
    assert span.attributes["http.route"] == "/tenants/{tenant}/items/{item_id}"
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "veil.instrumentation.asgi"


def test_generic_middleware_alone_reads_the_route_from_the_scope(captured: Captured) -> None:
    app = VeilASGIMiddleware(make_app(), **captured.providers)
    assert get(app, "/items/5").status_code == 200
    assert get(app, "/api/v1/users/u2").status_code == 200
    assert [span.name for span in captured.spans()] == ["GET /items/{item_id}", "GET /api/v1/users/{user_id}"]


@pytest.mark.slow
def test_uvicorn_starlette_spans_reach_the_otlp_receiver(otlp_receiver: OTLPReceiver) -> None:
    argv = ["uvicorn", "--port", "{port}", "--host", "127.0.0.1", "tests.instrumentation.asgi_apps.starlette_app:app"]
    with serve(argv, otlp_receiver, "starlette-e2e") as server:
        assert server.get("/tenants/acme/items/9?token=t", {"traceparent": TRACEPARENT}) == (200, b"item 9")
        spans = server_spans(otlp_receiver, 1)
    (span,) = spans
    assert span.name == "GET /tenants/{tenant}/items/{item_id}", server.output
    assert_continued(span)
    assert span.attributes["url.query"] == "token=REDACTED"
    assert span.resource["service.name"] == "starlette-e2e"


def test_websocket_normal_disconnect_is_not_an_error(instrumented: Captured) -> None:
    async def listen(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()
        await websocket.receive_text()  # raises WebSocketDisconnect(1000): the client closed normally

    app = Starlette(routes=[WebSocketRoute("/listen", listen)])
    with pytest.raises(WebSocketDisconnect):  # Starlette lets it reach the server, which ignores it
        websocket_session(app, "/listen", ["only one"])
    span = instrumented.only_span()
    assert span.name == "GET /listen"
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()
