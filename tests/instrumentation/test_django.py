"""DjangoInstrumentor and VeilMiddleware under WSGI and ASGI, in process and under real servers."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.test import AsyncClient, Client, override_settings
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation.apps import django_project
from tests.instrumentation.apps.support import (
    TRACE_ID,
    TRACEPARENT,
    Captured,
    assert_continued,
    assert_exception_recorded_once,
    assert_span_ends_with_the_stream,
    instrumented_fixture,
    serve,
    server_spans,
)
from veil.instrumentation._http import RequestInfo
from veil.instrumentation.django import MIDDLEWARE_PATH, DjangoInstrumentor, VeilMiddleware

instrumented = instrumented_fixture(DjangoInstrumentor)


def test_middleware_is_inserted_first_once_and_removed_again(captured: Captured) -> None:
    original = list(settings.MIDDLEWARE)
    instrumentor = DjangoInstrumentor()
    instrumentor.instrument(**captured.providers)
    try:
        Client().get("/api/v1/items/1/")
        Client().get("/api/v1/items/2/")
        assert list(settings.MIDDLEWARE) == [MIDDLEWARE_PATH, *original]
    finally:
        instrumentor.uninstrument()
    assert list(settings.MIDDLEWARE) == original
    assert len(captured.spans()) == 2


def test_position_option_and_user_placement_are_respected(captured: Captured) -> None:
    instrumentor = DjangoInstrumentor()
    instrumentor.instrument(middleware_position=1, **captured.providers)
    try:
        Client().get("/api/v1/items/1/")
        assert list(settings.MIDDLEWARE)[1] == MIDDLEWARE_PATH
    finally:
        instrumentor.uninstrument()
    listed = ["django.middleware.common.CommonMiddleware", MIDDLEWARE_PATH]
    with override_settings(MIDDLEWARE=listed):
        instrumentor.instrument(**captured.providers)
        try:
            Client().get("/api/v1/items/1/")
            assert list(settings.MIDDLEWARE) == listed  # no second copy
        finally:
            instrumentor.uninstrument()
        assert list(settings.MIDDLEWARE) == listed  # the user's own entry stays
    assert len(captured.spans()) == 2


def test_invalid_position_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from veil.errors import ConfigurationError

    monkeypatch.setenv("OTEL_PYTHON_DJANGO_MIDDLEWARE_POSITION", "first")
    with pytest.raises(ConfigurationError, match="OTEL_PYTHON_DJANGO_MIDDLEWARE_POSITION"):
        DjangoInstrumentor().instrument()
    DjangoInstrumentor().uninstrument()


def test_route_from_the_resolver_through_nested_includes(instrumented: Captured) -> None:
    response = Client().get("/api/v1/items/9/?token=t&x=1", HTTP_TRACEPARENT=TRACEPARENT)
    assert response.content == b"item 9"
    span = instrumented.only_span()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /api/v1/items/<int:pk>/"
    assert span.attributes["http.route"] == "/api/v1/items/<int:pk>/"
    assert span.attributes["url.query"] == "token=REDACTED&x=1"
    assert span.attributes["http.response.status_code"] == 200
    assert span.context.trace_id == int(TRACE_ID, 16)
    (duration,) = instrumented.points("http.server.request.duration")
    assert duration.attributes["http.route"] == "/api/v1/items/<int:pk>/"


def test_regex_routes_and_not_found(instrumented: Captured) -> None:
    Client().get("/archive/2024/")
    Client().get("/nothing/here/")
    archive, missing = instrumented.spans()
    assert archive.name == "GET /archive/(?P<year>[0-9]{4})/$"
    assert missing.name == "GET"
    assert missing.attributes["http.response.status_code"] == 404
    assert missing.status.is_unset


def test_view_exception_is_recorded_once_and_answered_500(instrumented: Captured) -> None:
    response = Client(raise_request_exception=False).get("/boom/")
    assert response.status_code == 500
    span = instrumented.only_span()
    assert span.name == "GET /boom/"
    assert_exception_recorded_once(span, "ValueError")


def test_streaming_response_ends_the_span_when_closed(instrumented: Captured) -> None:
    response = Client().get("/stream/")
    assert_span_ends_with_the_stream(instrumented, iter(response.streaming_content), response.close, "GET /stream/")


def test_hooks_see_the_django_objects(captured: Captured) -> None:
    seen: list[object] = []

    def request_hook(span: trace.Span, info: RequestInfo) -> None:
        seen.append(type(info.native).__name__)

    instrumentor = DjangoInstrumentor()
    instrumentor.instrument(request_hook=request_hook, **captured.providers)
    try:
        Client().get("/api/v1/items/3/")
    finally:
        instrumentor.uninstrument()
    assert seen == ["WSGIRequest"]


async def test_asgi_runs_the_middleware_on_the_event_loop(captured: Captured) -> None:
    hook_threads: list[int] = []

    def request_hook(span: trace.Span, info: RequestInfo) -> None:
        hook_threads.append(threading.get_ident())

    loop_thread = threading.get_ident()
    instrumentor = DjangoInstrumentor()
    instrumentor.instrument(request_hook=request_hook, **captured.providers)
    try:
        response = await AsyncClient().get("/async/", headers={"traceparent": TRACEPARENT})
    finally:
        instrumentor.uninstrument()
    assert response.content == b"async ok"
    span = captured.only_span()
    assert span.name == "GET /async/"
    assert span.context.trace_id == int(TRACE_ID, 16)
    assert hook_threads == [loop_thread], "the middleware ran on the event loop, not in a worker thread"
    assert django_project.view_threads["async_view"] == loop_thread


async def test_asgi_sync_view_and_exception(instrumented: Captured) -> None:
    client = AsyncClient(raise_request_exception=False)
    assert (await client.get("/api/v1/items/4/")).content == b"item 4"
    assert (await client.get("/boom/")).status_code == 500
    item, boom = instrumented.spans()
    assert item.name == "GET /api/v1/items/<int:pk>/"
    assert boom.attributes["error.type"] == "ValueError"
    assert [event.name for event in boom.events] == ["exception"]


def test_middleware_is_sync_and_async_capable() -> None:
    from asgiref.sync import iscoroutinefunction

    async def get_response(request: object) -> object:
        return request

    assert VeilMiddleware.sync_capable and VeilMiddleware.async_capable
    assert iscoroutinefunction(VeilMiddleware(get_response))
    assert not iscoroutinefunction(VeilMiddleware(lambda request: request))


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["gunicorn", "-w", "1", "-b", "127.0.0.1:{port}", "tests.instrumentation.apps.django_served:wsgi_application"],
        [
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "tests.instrumentation.apps.django_served:asgi_application",
        ],
    ],
    ids=["gunicorn-wsgi", "uvicorn-asgi"],
)
def test_real_servers_send_django_spans_to_the_otlp_receiver(otlp_receiver: OTLPReceiver, argv: list[str]) -> None:
    with serve(argv, otlp_receiver, "django-e2e") as server:
        assert server.get("/api/v1/items/5/", {"traceparent": TRACEPARENT, "tracestate": "k=v"}) == (200, b"item 5")
        assert server.get("/boom/")[0] == 500
        spans = server_spans(otlp_receiver, 2)
    by_name = {span.name: span for span in spans}
    assert set(by_name) == {"GET /api/v1/items/<int:pk>/", "GET /boom/"}, server.output
    assert_continued(by_name["GET /api/v1/items/<int:pk>/"], "k=v")
    assert by_name["GET /boom/"].attributes["error.type"] == "ValueError"
