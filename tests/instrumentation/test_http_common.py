"""The shared HTTP core: naming, configuration, header capture and redaction, dup mode, hooks."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.semconv._incubating.attributes.http_attributes import HTTP_METHOD, HTTP_STATUS_CODE
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.url_attributes import URL_QUERY

from tests.instrumentation.apps.support import Captured, captured_fixture  # noqa: F401 - fixture
from veil import settings
from veil.errors import ConfigurationError
from veil.instrumentation import _http
from veil.instrumentation._http import (
    HeaderCapture,
    RequestInfo,
    ServerTelemetry,
    normalize_method,
    server_config,
    span_name,
    split_host,
)


def test_methods_and_span_names_follow_the_conventions() -> None:
    assert normalize_method("GET") == "GET"
    assert normalize_method("get") == "_OTHER"  # methods are case-sensitive
    assert normalize_method("PURGE") == "_OTHER"
    assert span_name("GET", "/users/{id}") == "GET /users/{id}"
    assert span_name("POST", None) == "POST"
    assert span_name("_OTHER", "/x") == "HTTP /x"
    assert span_name("_OTHER", None) == "HTTP"


@pytest.mark.parametrize(
    ("host", "scheme", "expected"),
    [
        ("example.com", "https", ("example.com", 443)),
        ("example.com:8080", "http", ("example.com", 8080)),
        ("[::1]:9000", "http", ("::1", 9000)),
        ("[::1]", "http", ("::1", 80)),
        ("example.com:bad", "http", ("example.com", None)),
    ],
)
def test_split_host(host: str, scheme: str, expected: tuple[str, int | None]) -> None:
    assert split_host(host, scheme) == expected


def test_header_capture_always_redacts_sensitive_values() -> None:
    capture = HeaderCapture([".*"], ["x-internal-.*"], "http.request.header", "VARIABLE")
    attributes = capture.attributes(
        [
            ("Authorization", "Bearer abc.def"),
            ("Cookie", "session=s3cr3t; theme=dark"),
            ("X-Api-Key", "k-123"),
            ("X-Internal-Thing", "plain"),
            ("X-Request-Id", "r-1"),
            ("Accept", "a"),
            ("accept", "b"),
        ]
    )
    assert attributes["http.request.header.authorization"] == ("Bearer [REDACTED]",)
    assert "s3cr3t" not in attributes["http.request.header.cookie"][0]
    assert attributes["http.request.header.x-api-key"] == ("[REDACTED]",)
    assert attributes["http.request.header.x-internal-thing"] == ("[REDACTED]",)
    assert attributes["http.request.header.x-request-id"] == ("r-1",)
    assert attributes["http.request.header.accept"] == ("a", "b")


def test_header_capture_only_takes_listed_names() -> None:
    capture = HeaderCapture(["content-type", "x-.*-id"], [], "http.response.header", "VARIABLE")
    attributes = capture.attributes([("Content-Type", "text/plain"), ("X-Trace-Id", "1"), ("Server", "s")])
    assert attributes == {
        "http.response.header.content-type": ("text/plain",),
        "http.response.header.x-trace-id": ("1",),
    }


def test_config_reads_settings_once_and_keywords_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "healthz")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "x-request-id")
    settings.set_current(None)
    try:
        config = server_config("flask")
        assert config.is_excluded("http://h/healthz")
        assert not config.is_excluded("http://h/users")
        assert config.request_headers is not None
        monkeypatch.setenv("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "/metrics$")
        per_library = server_config("flask")
        assert per_library.is_excluded("http://h/metrics")
        assert not per_library.is_excluded("http://h/healthz")
        keyword = server_config("flask", excluded_urls="ping,pong")
        assert keyword.is_excluded("http://h/pong?x=1")
        assert not keyword.is_excluded("http://h/metrics")
    finally:
        settings.set_current(None)


def test_invalid_regular_expression_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "([unclosed")
    settings.set_current(None)
    try:
        with pytest.raises(ConfigurationError, match="OTEL_PYTHON_DJANGO_EXCLUDED_URLS"):
            server_config("django")
    finally:
        settings.set_current(None)


def test_query_redaction_keeps_every_other_byte() -> None:
    config = server_config("wsgi", sensitive_query_parameters=["ticket"])
    query = "a=1&flag&token=abc&X-Amz-Signature=zz&sig=q&ticket=t&b=%20x&empty="
    assert config.redact_query(query) == (
        "a=1&flag&token=REDACTED&X-Amz-Signature=REDACTED&sig=REDACTED&ticket=REDACTED&b=%20x&empty="
    )


def _start(telemetry: ServerTelemetry, query: str = "", headers: dict[str, str] | None = None) -> _http.ServerRequest:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/p",
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    request = telemetry.start_environ(environ)
    assert request is not None
    return request


def test_dup_mode_emits_old_names_too(captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http/dup")
    settings.set_current(None)
    telemetry = ServerTelemetry("test", server_config("wsgi"), **captured.providers)
    request = _start(telemetry, query="token=x")
    request.set_status(200)
    request.finish()
    span = captured.only_span()
    assert span.attributes[HTTP_REQUEST_METHOD] == "GET"
    assert span.attributes[HTTP_METHOD] == "GET"
    assert span.attributes[HTTP_RESPONSE_STATUS_CODE] == 200
    assert span.attributes[HTTP_STATUS_CODE] == 200
    assert span.attributes["http.target"] == "/p?token=REDACTED"
    assert captured.points("http.server.duration")
    assert captured.points("http.server.request.duration")


def test_stable_mode_emits_no_old_names(captured: Captured) -> None:
    telemetry = ServerTelemetry("test", server_config("wsgi"), **captured.providers)
    request = _start(telemetry, query="sig=1&keep=2")
    request.finish()
    span = captured.only_span()
    assert HTTP_METHOD not in span.attributes
    assert span.attributes[URL_QUERY] == "sig=REDACTED&keep=2"
    assert not captured.points("http.server.duration")


def test_hooks_that_raise_are_logged_once(captured: Captured, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[RequestInfo] = []

    def request_hook(span: object, info: RequestInfo) -> None:
        seen.append(info)
        raise RuntimeError("hook bug")

    def response_hook(span: object, info: RequestInfo, response: object) -> None:
        raise RuntimeError("hook bug")

    config = server_config("wsgi", request_hook=request_hook, response_hook=response_hook)
    telemetry = ServerTelemetry("test", config, **captured.providers)
    with caplog.at_level(logging.WARNING, logger="veil"):
        for _ in range(3):
            request = _start(telemetry, query="password=p&x=1", headers={"Authorization": "Basic zz"})
            request.set_status(204)
            request.finish()
    assert len(captured.spans()) == 3
    assert all(span.end_time is not None for span in captured.spans())
    assert seen[0].url == "http://localhost:8000/p?password=REDACTED&x=1"
    assert seen[0].headers["authorization"] == "Basic zz"  # hooks see the request as it is
    messages = [record.getMessage() for record in caplog.records]
    assert sum("request_hook raised" in message for message in messages) == 1
    assert sum("response_hook raised" in message for message in messages) == 1


def test_5xx_is_an_error_and_4xx_is_not(captured: Captured) -> None:
    telemetry = ServerTelemetry("test", server_config("wsgi"), **captured.providers)
    for status in (404, 503):
        request = _start(telemetry)
        request.set_status(status)
        request.finish()
    not_found, unavailable = captured.spans()
    assert not_found.status.is_unset
    assert "error.type" not in not_found.attributes
    assert not unavailable.status.is_ok and not unavailable.status.is_unset
    assert unavailable.attributes["error.type"] == "503"


def test_finish_is_idempotent_and_active_requests_return_to_zero(captured: Captured) -> None:
    telemetry = ServerTelemetry("test", server_config("wsgi"), **captured.providers)
    request = _start(telemetry)
    (active,) = captured.points("http.server.active_requests")
    assert active.value == 1
    request.finish()
    request.finish()
    (active,) = captured.points("http.server.active_requests")
    assert active.value == 0
    (duration,) = captured.points("http.server.request.duration")
    assert duration.count == 1
    assert list(duration.explicit_bounds) == list(_http.DURATION_BUCKETS)


def test_attribute_sets_hold_only_known_values() -> None:
    from veil.instrumentation._http.semconv import server_metric_attributes, server_shape

    # a Host header without a name (":8080") gives a port but no server.address, never an empty one
    _, attributes, _, _ = server_shape("GET", "http", ":8080", "1.1", dup=True)
    assert attributes == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "server.port": 8080,
        "network.protocol.version": "1.1",
        "http.method": "GET",
        "http.scheme": "http",
        "http.host": ":8080",
        "net.host.port": 8080,
        "http.flavor": "1.1",
    }
    stable, old = server_metric_attributes(("_OTHER", "PURGE", "https", None, None, None, None), dup=True)
    assert stable == {"http.request.method": "_OTHER", "url.scheme": "https"}
    assert old == {"http.method": "PURGE", "http.scheme": "https"}
