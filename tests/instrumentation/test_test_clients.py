"""Each framework's own test client, used as tests use it: send, check the status, never read the body.

A body that is complete when the framework returns it must end the span and record the metrics then, so the
test sees a finished span, one http.server.request.duration point per request and active_requests back to 0.
A streamed body still ends the span only when it is consumed or closed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient as AioHttpTestClient
from aiohttp.test_utils import TestServer
from fastapi import FastAPI
from flask import Flask, Response, jsonify
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from werkzeug.test import Client as WerkzeugClient

from tests.instrumentation.apps.support import Captured
from veil.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from veil.instrumentation.django import DjangoInstrumentor
from veil.instrumentation.fastapi import FastAPIInstrumentor
from veil.instrumentation.flask import FlaskInstrumentor
from veil.instrumentation.starlette import StarletteInstrumentor
from veil.instrumentation.wsgi import VeilWSGIMiddleware

with warnings.catch_warnings():  # Starlette 1.x warns that its client still runs on httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

REQUESTS = 3


def _count(captured: Captured, name: str) -> int:
    return sum(point.count for point in captured.points(name))


def _active(captured: Captured) -> int:
    return sum(point.value for point in captured.points("http.server.active_requests"))


def assert_every_request_finished(captured: Captured, name: str, requests: int = REQUESTS) -> None:
    spans = [span for span in captured.spans() if span.kind is SpanKind.SERVER]
    assert [span.name for span in spans] == [name] * requests
    assert all(span.attributes and span.attributes["http.response.status_code"] == 200 for span in spans)
    assert _count(captured, "http.server.request.duration") == requests
    assert _active(captured) == 0


def flask_app() -> Flask:
    app = Flask("veil_test_clients")

    @app.route("/text/<int:n>")
    def text(n: int) -> str:
        return "x" * n

    @app.route("/json")
    def as_json() -> Response:
        return jsonify(ok=True)

    @app.route("/stream")
    def stream() -> Response:
        def generate() -> Iterator[str]:
            yield "a"
            yield "b"

        return Response(generate())

    return app


def test_flask_test_client_ends_the_span_without_reading_the_body(captured: Captured) -> None:
    app = flask_app()
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument(**captured.providers)
    try:
        client = app.test_client()
        for _ in range(REQUESTS):
            assert client.get("/text/5").status_code == 200
    finally:
        instrumentor.uninstrument()
    assert_every_request_finished(captured, "GET /text/<int:n>")
    (size,) = captured.points("http.server.response.body.size")
    assert size.sum == 5 * REQUESTS


def test_flask_instrument_app_json_and_head(captured: Captured) -> None:
    app = flask_app()
    FlaskInstrumentor.instrument_app(app, **captured.providers)
    try:
        client = app.test_client()
        assert client.get("/json").status_code == 200
        assert client.head("/text/3").status_code == 200
        assert client.get("/json").status_code == 200
    finally:
        FlaskInstrumentor.uninstrument_app(app)
    assert sorted(span.name for span in captured.spans()) == ["GET /json", "GET /json", "HEAD /text/<int:n>"]
    assert _count(captured, "http.server.request.duration") == REQUESTS
    assert _active(captured) == 0


def test_flask_streamed_response_still_ends_when_the_body_is_consumed(captured: Captured) -> None:
    app = flask_app()
    FlaskInstrumentor.instrument_app(app, **captured.providers)
    try:
        response = app.test_client().get("/stream")
        assert response.status_code == 200
        assert captured.spans() == ()
        assert _active(captured) == 1
        assert response.get_data() == b"ab"
        response.close()
    finally:
        FlaskInstrumentor.uninstrument_app(app)
    assert_every_request_finished(captured, "GET /stream", requests=1)


def test_wsgi_list_body_ends_at_return_and_a_lazy_start_response_waits(captured: Captured) -> None:
    def listed(environ: dict[str, object], start_response: object) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [b"one", b"two"]

    def lazy(environ: dict[str, object], start_response: object) -> Iterator[bytes]:
        # PEP 3333 lets a generator call start_response at its first step: no status yet when it returns
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        yield b"late"

    listed_client = WerkzeugClient(VeilWSGIMiddleware(listed, **captured.providers))
    for _ in range(REQUESTS):
        assert listed_client.get("/").status_code == 200
    assert_every_request_finished(captured, "GET")
    (size,) = captured.points("http.server.response.body.size")
    assert size.sum == 6 * REQUESTS

    response = WerkzeugClient(VeilWSGIMiddleware(lazy, **captured.providers)).get("/")
    assert response.status_code == 200
    assert len(captured.spans()) == REQUESTS
    response.close()
    assert len(captured.spans()) == REQUESTS + 1
    assert _active(captured) == 0


def test_django_test_client(captured: Captured) -> None:
    from django.test import Client

    from tests.instrumentation.apps import django_project

    assert django_project.urlpatterns
    instrumentor = DjangoInstrumentor()
    instrumentor.instrument(**captured.providers)
    try:
        client = Client()
        for _ in range(REQUESTS):
            assert client.get("/api/v1/items/7/").status_code == 200
        assert_every_request_finished(captured, "GET /api/v1/items/<int:pk>/")
        streamed = client.get("/stream/")  # Django's client closes a streamed response once it is consumed
        assert streamed.status_code == 200
        assert _active(captured) == 1
        assert b"".join(streamed.streaming_content) == b"data: 1\n\ndata: 2\n\n"  # type: ignore[attr-defined]
    finally:
        instrumentor.uninstrument()
    assert _active(captured) == 0
    assert len(captured.spans()) == REQUESTS + 1


def _plain(request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
def test_starlette_and_fastapi_test_client(captured: Captured, framework: str) -> None:
    if framework == "starlette":
        instrumentor: StarletteInstrumentor | FastAPIInstrumentor = StarletteInstrumentor()
    else:
        instrumentor = FastAPIInstrumentor()
    instrumentor.instrument(**captured.providers)
    try:
        if framework == "starlette":
            app: Starlette = Starlette(routes=[Route("/items/{pk}", _plain)])
        else:
            app = FastAPI()
            app.add_api_route("/items/{pk}", lambda pk: {"pk": pk})
        client = TestClient(app)
        for number in range(REQUESTS):
            assert client.get(f"/items/{number}").status_code == 200
    finally:
        instrumentor.uninstrument()
    assert_every_request_finished(captured, "GET /items/{pk}")


async def test_aiohttp_test_client_spans_end_without_reading_the_body(captured: Captured) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="y" * 20_000)

    app = web.Application()
    app.router.add_get("/big", handler)
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(**captured.providers)
    client = AioHttpTestClient(TestServer(app))
    await client.start_server()
    try:
        for _ in range(REQUESTS):
            response = await client.get("/big")
            assert response.status == 200
        await client.close()
    finally:
        instrumentor.uninstrument()
    spans = captured.spans()
    assert [span.kind for span in spans] == [SpanKind.CLIENT] * REQUESTS
    assert _count(captured, "http.client.request.duration") == REQUESTS
