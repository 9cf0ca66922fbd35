"""urllib.request instrumentation against a real loopback server."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.url_attributes import URL_FULL

from tests.fixtures.http_server import HTTPTestServer
from tests.instrumentation._clients import (
    REDACTED_QUERY,
    SIGNED_QUERY,
    Providers,
    assert_error,
    assert_lasted,
    assert_plain_get,
    assert_propagated,
    assert_redirects_in_one_span,
    attributes,
    free_port,
    instrument_fixtures,
)
from veil.instrumentation.urllib import URLLibInstrumentor

ORIGINAL_OPEN = urllib.request.OpenerDirector.open

instrument, traced = instrument_fixtures(URLLibInstrumentor)


def test_urlopen_string(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    with urllib.request.urlopen(http_server.url("/u?x=1"), timeout=5) as response:
        assert response.read() == b"ok"
    assert_plain_get(providers, http_server.url("/u?x=1"), http_server.port, http_server.last().header("traceparent"))


def test_request_object_is_not_left_mutated(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    request = urllib.request.Request(http_server.url("/r"), data=b"payload", headers={"X-Mine": "1"}, method="PUT")
    urllib.request.urlopen(request, timeout=5).read()
    assert request.headers == {"X-mine": "1"}
    assert not any(key.lower() == "traceparent" for key in request.unredirected_hdrs)
    span = providers.only_client_span()
    assert span.name == "PUT"
    assert http_server.last().body == b"payload"
    assert_propagated(span, http_server.last().header("traceparent"))


def test_span_ends_when_body_is_read(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    response = urllib.request.urlopen(http_server.url("/stream/3?delay=0.05"), timeout=5)
    assert providers.client_spans() == []
    assert response.read().count(b"chunk-") == 3
    assert_lasted(providers.only_client_span(), 0.1)
    response.close()


def test_span_ends_on_close(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    response = urllib.request.urlopen(http_server.url("/bytes/50000"), timeout=5)
    response.read(10)
    assert providers.client_spans() == []
    response.close()
    providers.only_client_span()


def test_http_error_is_recorded_and_reraised(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(http_server.url("/status/404"), timeout=5)
    assert caught.value.code == 404
    span = providers.only_client_span()
    assert_error(span, "404")
    assert attributes(span)[HTTP_RESPONSE_STATUS_CODE] == 404


def test_redirects_one_span_propagated_each_hop(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    assert urllib.request.urlopen(http_server.url("/redirect/2"), timeout=5).read() == b"redirected"
    assert_redirects_in_one_span(providers, 2, [request.header("traceparent") for request in http_server.requests])


def test_connection_refused(traced: Any, providers: Providers) -> None:
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{free_port()}/", timeout=5)
    assert attributes(providers.only_client_span())[ERROR_TYPE] == "urllib.error.URLError"


def test_timeout(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        urllib.request.urlopen(http_server.url("/delay/1"), timeout=0.2)
    assert attributes(providers.only_client_span())[ERROR_TYPE] in {"TimeoutError", "urllib.error.URLError"}


def test_redaction(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    urllib.request.urlopen(http_server.url(f"/s?{SIGNED_QUERY}"), timeout=5).read()
    assert attributes(providers.only_client_span())[URL_FULL] == http_server.url(f"/s?{REDACTED_QUERY}")


def test_non_http_schemes_are_not_traced(traced: Any, providers: Providers) -> None:
    assert urllib.request.urlopen("data:text/plain,hello").read() == b"hello"
    assert providers.spans() == []


def test_excluded_urls(instrument: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    instrument(excluded_urls="/health")
    urllib.request.urlopen(http_server.url("/health"), timeout=5).read()
    assert providers.spans() == []
    assert http_server.last().header("traceparent") is None


def test_uninstrument(instrument: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    instrument().uninstrument()
    assert urllib.request.OpenerDirector.open is ORIGINAL_OPEN
    urllib.request.urlopen(http_server.url("/"), timeout=5).read()
    assert providers.spans() == []
