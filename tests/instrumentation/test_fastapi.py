"""FastAPIInstrumentor: apps created before instrument(), included/mounted routes, one span, streaming, uvicorn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, BackgroundTasks, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation.apps.support import (
    RANDOM_TRACEPARENT,
    Captured,
    asgi_client,
    assert_continued,
    assert_exception_recorded_once,
    instrumented_fixture,
    serve,
    server_spans,
)
from tests.instrumentation.apps.support import asgi_request as request
from veil.instrumentation.fastapi import FastAPIInstrumentor

MARKS: dict[str, int] = {}


def make_app(**kwargs: Any) -> FastAPI:
    app = FastAPI(**kwargs)

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(status_code=418)

    @app.get("/boom")
    def boom() -> None:
        raise ZeroDivisionError("sync endpoint failed")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for index in range(3):
                yield f"chunk {index}\n".encode()
                await asyncio.sleep(0.01)
            MARKS["last_chunk"] = time.time_ns()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/jobs", status_code=202)
    async def job(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(lambda: MARKS.__setitem__("background", time.time_ns()))
        return {"status": "queued"}

    @app.get("/echo/{number}")
    async def echo(number: int, request: Request) -> dict[str, Any]:
        await asyncio.sleep(0.001 * (number % 5))
        if number % 4 == 0:
            raise HTTPException(status_code=404)
        return {"number": number, "agent": request.headers["user-agent"]}

    api = APIRouter(prefix="/api")
    v2 = APIRouter(prefix="/v2")

    @v2.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    api.include_router(v2)
    app.include_router(api)

    sub = FastAPI()

    @sub.get("/reports/{year}")
    async def report(year: int) -> dict[str, int]:
        return {"year": year}

    app.mount("/sub", sub)
    plain = Starlette(routes=[Route("/files/{name}", lambda request: PlainTextResponse("file"))])
    app.mount("/tenants/{tenant}", plain)
    return app


EARLY_APP = make_app()  # created before any test instruments FastAPI
instrumented = instrumented_fixture(FastAPIInstrumentor)


def test_app_created_before_instrument_is_traced_with_its_route(instrumented: Captured) -> None:
    response = request(EARLY_APP, "/items/3?access_token=xyz&page=1")
    assert response.json() == {"item_id": 3}
    span = instrumented.only_span()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /items/{item_id}"
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.attributes["url.query"] == "access_token=REDACTED&page=1"
    assert span.attributes["http.response.status_code"] == 200
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "veil.instrumentation.fastapi"
    (duration,) = instrumented.points("http.server.request.duration")
    assert duration.attributes["http.route"] == "/items/{item_id}"


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/api/v2/things/t1", "/api/v2/things/{thing_id}"),  # nested included routers keep both prefixes
        ("/sub/reports/2024", "/sub/reports/{year}"),  # a mounted FastAPI app: still one span
        ("/tenants/acme/files/a.txt", "/tenants/{tenant}/files/{name}"),  # a mounted Starlette app
    ],
)
def test_included_and_mounted_routes_have_full_templates_and_one_span(
    instrumented: Captured, path: str, route: str
) -> None:
    assert request(EARLY_APP, path).status_code == 200
    span = instrumented.only_span()
    assert span.name == f"GET {route}"
    assert span.attributes["http.route"] == route


def test_not_found_and_method_not_allowed(instrumented: Captured) -> None:
    assert request(EARLY_APP, "/missing").status_code == 404
    assert request(EARLY_APP, "/items/1", method="DELETE").status_code == 405
    missing, not_allowed = instrumented.spans()
    assert missing.name == "GET"
    assert "http.route" not in missing.attributes
    assert not_allowed.name == "DELETE /items/{item_id}"
    assert not_allowed.attributes["http.response.status_code"] == 405
    assert all(span.status.status_code is StatusCode.UNSET for span in (missing, not_allowed))


def test_http_exception_4xx_is_not_an_error(instrumented: Captured) -> None:
    assert request(EARLY_APP, "/teapot").status_code == 418
    span = instrumented.only_span()
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in span.attributes
    assert span.events == ()


def test_unhandled_exception_recorded_once_answered_500_and_reraised(instrumented: Captured) -> None:
    with pytest.raises(ZeroDivisionError, match="sync endpoint failed"):
        request(EARLY_APP, "/boom", raise_app_exceptions=True)
    span = instrumented.only_span()
    assert_exception_recorded_once(span, "ZeroDivisionError")
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["http.route"] == "/boom"


def test_streaming_response_ends_the_span_after_the_last_chunk(instrumented: Captured) -> None:
    response = request(EARLY_APP, "/stream")
    assert response.text == "chunk 0\nchunk 1\nchunk 2\n"
    span = instrumented.only_span()
    assert span.end_time is not None
    assert span.end_time >= MARKS["last_chunk"]
    (size,) = instrumented.points("http.server.response.body.size")
    assert size.sum == len(response.content)


def test_server_sent_events_end_after_the_last_event(captured: Captured) -> None:
    sse = pytest.importorskip("fastapi.sse")
    app = FastAPI()
    marks: dict[str, int] = {}

    @app.get("/events", response_class=sse.EventSourceResponse)
    async def events() -> AsyncIterator[dict[str, int]]:
        for index in range(3):
            yield {"n": index}
            await asyncio.sleep(0.01)
        marks["last_event"] = time.time_ns()

    FastAPIInstrumentor.instrument_app(app, **captured.providers)
    try:
        response = request(app, "/events")
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.count("data:") == 3
    span = captured.only_span()
    assert span.name == "GET /events"
    assert span.end_time is not None and span.end_time >= marks["last_event"]


def test_span_ends_before_background_tasks_run(instrumented: Captured) -> None:
    assert request(EARLY_APP, "/jobs", method="POST").status_code == 202
    span = instrumented.only_span()
    assert span.end_time is not None
    assert span.end_time <= MARKS["background"]


def test_500_concurrent_requests_keep_their_own_attributes(instrumented: Captured) -> None:
    async def main() -> list[httpx.Response]:
        async with asgi_client(EARLY_APP) as client:
            return await asyncio.gather(
                *(
                    client.get(f"/echo/{number}?n={number}", headers={"user-agent": f"agent-{number}"})
                    for number in range(500)
                )
            )

    responses = asyncio.run(main())
    assert [response.status_code for response in responses] == [
        404 if number % 4 == 0 else 200 for number in range(500)
    ]
    spans = instrumented.spans()
    assert len(spans) == 500
    for span in spans:
        number = int(span.attributes["url.path"].rsplit("/", 1)[1])
        assert span.name == "GET /echo/{number}"
        assert span.attributes["url.query"] == f"n={number}"
        assert span.attributes["user_agent.original"] == f"agent-{number}"
        assert span.attributes["http.response.status_code"] == (404 if number % 4 == 0 else 200)
    (active,) = instrumented.points("http.server.active_requests")
    assert active.value == 0
    durations = instrumented.points("http.server.request.duration")
    assert sum(point.count for point in durations) == 500


def test_native_fastapi_telemetry_is_replaced_not_doubled(captured: Captured) -> None:
    if "telemetry" not in FastAPI.__init__.__code__.co_varnames:
        pytest.skip("this FastAPI has no native telemetry")
    app = make_app(telemetry={"tracer_provider": captured.tracer_provider, "meter_provider": captured.meter_provider})
    assert request(app, "/items/5").status_code == 200  # FastAPI alone traces this one
    native = captured.spans()  # FastAPI's SERVER span plus its operation spans
    assert {span.instrumentation_scope.name for span in native} == {"fastapi"}
    assert [span.kind for span in native].count(SpanKind.SERVER) == 1
    captured.exporter.clear()
    FastAPIInstrumentor.instrument_app(app, **captured.providers)
    try:
        assert request(app, "/items/6").status_code == 200
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    span = captured.only_span()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "veil.instrumentation.fastapi"
    assert span.name == "GET /items/{item_id}"


def test_instrument_app_with_its_own_options_and_uninstrument_app(captured: Captured) -> None:
    app = make_app()
    hooks: list[str] = []
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="/items/2$",
        request_hook=lambda span, info: hooks.append(info.url),
        **captured.providers,
    )
    try:
        request(app, "/items/1")
        request(app, "/items/2")
        request(make_app(), "/items/3")  # another app: not instrumented
    finally:
        FastAPIInstrumentor.uninstrument_app(app)
    request(app, "/items/4")
    assert [span.attributes["url.path"] for span in captured.spans()] == ["/items/1"]
    assert hooks == ["http://test/items/1"]
    assert not hasattr(FastAPI.__call__, "__wrapped__")


def test_fastapi_apps_are_left_to_the_fastapi_instrumentation(captured: Captured) -> None:
    from veil.instrumentation.starlette import StarletteInstrumentor

    instrumentor = StarletteInstrumentor()
    instrumentor.instrument(**captured.providers)
    try:
        assert request(EARLY_APP, "/items/1").status_code == 200
    finally:
        instrumentor.uninstrument()
    assert captured.spans() == ()  # OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=fastapi means FastAPI untraced


@pytest.mark.slow
def test_uvicorn_fastapi_spans_reach_the_otlp_receiver(otlp_receiver: OTLPReceiver) -> None:
    argv = ["uvicorn", "--port", "{port}", "--host", "127.0.0.1", "tests.instrumentation.asgi_apps.fastapi_app:app"]
    with serve(argv, otlp_receiver, "fastapi-e2e") as server:
        headers = {"traceparent": RANDOM_TRACEPARENT, "tracestate": "a=b"}
        assert server.get("/api/items/7?api_key=k", headers) == (200, b'{"item_id":7}')
        assert server.get("/stream")[1] == b"0123"
        spans = server_spans(otlp_receiver, 2)
    by_route = {span.attributes.get("http.route"): span for span in spans}
    item = by_route["/api/items/{item_id}"]
    assert item.name == "GET /api/items/{item_id}", server.output
    assert_continued(item, "a=b")
    assert item.attributes["url.query"] == "api_key=REDACTED"
    assert item.resource["service.name"] == "fastapi-e2e"
    assert item.scope_name == "veil.instrumentation.fastapi"
    assert by_route["/stream"].attributes["http.response.status_code"] == 200
    everything = otlp_receiver.spans()  # after the server stopped (and flushed)
    assert [span.kind for span in everything] == ["SERVER", "SERVER"], "FastAPI's native telemetry stays off"
    assert {span.scope_name for span in everything} == {"veil.instrumentation.fastapi"}


def test_unknown_option_is_a_configuration_error() -> None:
    from veil.errors import ConfigurationError

    app = make_app()
    with pytest.raises(ConfigurationError, match="excluded_url"):
        FastAPIInstrumentor.instrument_app(app, excluded_url="/healthz")
    with pytest.raises(ConfigurationError, match=r"excluded_urls"):
        FastAPIInstrumentor.instrument_app(app, excluded_urls="(unclosed")
    assert not hasattr(FastAPI.__call__, "__wrapped__")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_an_application_root_path_is_not_part_of_the_route(instrumented: Captured) -> None:
    app = make_app(root_path="/gateway")
    assert request(app, "/items/8").status_code == 200
    span = instrumented.only_span()
    assert span.attributes["http.route"] == "/items/{item_id}"
