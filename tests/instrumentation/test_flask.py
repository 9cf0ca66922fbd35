"""FlaskInstrumentor: apps created before instrument(), routes, exceptions, streaming, instrument_app, gunicorn."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask import Flask, Response, stream_with_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation.apps.support import (
    TRACEPARENT,
    Captured,
    assert_continued,
    assert_exception_recorded_once,
    assert_span_ends_with_the_stream,
    instrumented_fixture,
    serve,
    server_spans,
)
from veil.instrumentation._http import RequestInfo, ResponseInfo
from veil.instrumentation.flask import FlaskInstrumentor
from veil.instrumentation.wsgi import VeilWSGIMiddleware


def make_app() -> Flask:
    app = Flask("veil_test_app")

    @app.route("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return f"user {user_id}"

    @app.route("/boom")
    def boom() -> str:
        raise ValueError("kaput")

    @app.route("/events")
    def events() -> Response:
        def generate() -> Iterator[str]:
            yield "data: 1\n\n"
            time.sleep(0.05)
            yield "data: 2\n\n"

        return Response(stream_with_context(generate()), mimetype="text/event-stream")

    return app


instrumented = instrumented_fixture(FlaskInstrumentor)


def test_app_created_before_instrument_is_traced_with_its_route(captured: Captured) -> None:
    app = make_app()  # exists before instrument()
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument(**captured.providers)
    try:
        assert app.test_client().get("/users/42?q=1").data == b"user 42"
    finally:
        instrumentor.uninstrument()
    span = captured.only_span()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /users/<int:user_id>"
    assert span.attributes["http.route"] == "/users/<int:user_id>"
    assert span.attributes["url.path"] == "/users/42"
    assert span.attributes["http.response.status_code"] == 200
    (duration,) = captured.points("http.server.request.duration")
    assert duration.attributes["http.route"] == "/users/<int:user_id>"


def test_uninstrument_stops_tracing(captured: Captured) -> None:
    app = make_app()
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument(**captured.providers)
    instrumentor.uninstrument()
    assert app.test_client().get("/users/1").data == b"user 1"
    assert captured.spans() == ()


def test_not_found_has_no_route(instrumented: Captured) -> None:
    response = make_app().test_client().get("/missing/123")
    assert response.status_code == 404
    response.close()
    span = instrumented.only_span()
    assert span.name == "GET"
    assert "http.route" not in span.attributes
    assert span.status.is_unset


def test_unhandled_exception_recorded_once_and_flask_answers_500(instrumented: Captured) -> None:
    response = make_app().test_client().get("/boom")
    assert response.status_code == 500
    response.close()
    span = instrumented.only_span()
    assert span.name == "GET /boom"
    assert_exception_recorded_once(span, "ValueError")
    assert span.attributes["http.response.status_code"] == 500


def test_propagated_exception_is_reraised_untouched(instrumented: Captured) -> None:
    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(ValueError, match="kaput"):
        app.test_client().get("/boom")
    span = instrumented.only_span()
    assert span.name == "GET /boom"  # the route is read while Flask handles the exception
    assert [event.name for event in span.events] == ["exception"]
    assert span.attributes["http.response.status_code"] == 500


def test_server_sent_events_end_the_span_after_the_stream(instrumented: Captured) -> None:
    response = make_app().test_client().get("/events", buffered=False)
    assert_span_ends_with_the_stream(instrumented, iter(response.response), response.close, "GET /events")


def test_instrument_app_with_its_own_hooks(captured: Captured) -> None:
    calls: list[tuple[str, object]] = []

    def request_hook(span: trace.Span, info: RequestInfo) -> None:
        calls.append(("request", info.url))

    def response_hook(span: trace.Span, info: RequestInfo, response: ResponseInfo) -> None:
        calls.append(("response", response.status_code))
        span.set_attribute("app.custom", "yes")

    app = make_app()
    FlaskInstrumentor.instrument_app(app, request_hook=request_hook, response_hook=response_hook, **captured.providers)
    FlaskInstrumentor.instrument_app(app)  # second call is a no-op
    try:
        assert app.test_client().get("/users/7?secret=s").data == b"user 7"
    finally:
        FlaskInstrumentor.uninstrument_app(app)
    assert calls == [("request", "http://localhost/users/7?secret=REDACTED"), ("response", 200)]
    span = captured.only_span()
    assert span.name == "GET /users/<int:user_id>"
    assert span.attributes["app.custom"] == "yes"
    app.test_client().get("/users/8").close()
    assert len(captured.spans()) == 1


def test_excluded_urls_from_the_flask_variable(captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "/users/1$")
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument(**captured.providers)
    try:
        client = make_app().test_client()
        client.get("/users/1").close()
        client.get("/users/2").close()
    finally:
        instrumentor.uninstrument()
    assert [span.attributes["url.path"] for span in captured.spans()] == ["/users/2"]


def test_wsgi_middleware_around_flask_gives_one_span_with_the_route(instrumented: Captured) -> None:
    app = make_app()
    app.wsgi_app = VeilWSGIMiddleware(app.wsgi_app, **instrumented.providers)  # type: ignore[method-assign]
    app.test_client().get("/users/3").close()
    span = instrumented.only_span()
    assert span.name == "GET /users/<int:user_id>"


@pytest.mark.slow
def test_gunicorn_flask_spans_reach_the_otlp_receiver(otlp_receiver: OTLPReceiver) -> None:
    argv = ["gunicorn", "-w", "1", "-b", "127.0.0.1:{port}", "tests.instrumentation.apps.flask_app:app"]
    with serve(argv, otlp_receiver, "flask-e2e") as server:
        assert server.get("/users/5", {"traceparent": TRACEPARENT}) == (200, b"user 5")
        assert server.get("/boom")[0] == 500
        spans = server_spans(otlp_receiver, 2)
    by_name = {span.name: span for span in spans}
    assert set(by_name) == {"GET /users/<int:user_id>", "GET /boom"}, server.output
    assert_continued(by_name["GET /users/<int:user_id>"])
    boom = by_name["GET /boom"]
    assert boom.status_code == "ERROR"
    assert boom.attributes["error.type"] == "RuntimeError"
    assert [event.name for event in boom.events] == ["exception"]
