"""urllib3 instrumentation against a real loopback server."""

from __future__ import annotations

from typing import Any

import pytest
import urllib3
from opentelemetry import trace
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_RESEND_COUNT, HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import StatusCode

from tests.fixtures.http_server import HTTPTestServer
from tests.instrumentation._clients import (
    REDACTED_QUERY,
    SIGNED_QUERY,
    Providers,
    assert_error,
    assert_lasted,
    assert_plain_get,
    assert_propagated,
    attributes,
    free_port,
    instrument_fixtures,
)
from veil.instrumentation.urllib3 import URLLib3Instrumentor

ORIGINAL_URLOPEN = urllib3.connectionpool.HTTPConnectionPool.urlopen

instrument, traced = instrument_fixtures(URLLib3Instrumentor)


def test_pool_manager_request(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    headers = {"X-Mine": "1"}
    response = urllib3.PoolManager().request("GET", http_server.url("/p?q=1"), headers=headers)
    assert response.status == 200
    assert headers == {"X-Mine": "1"}  # the caller's dict is untouched
    assert_plain_get(providers, http_server.url("/p?q=1"), http_server.port, http_server.last().header("traceparent"))


def test_urllib3_redacts_signed_urls_too(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", http_server.port)
    pool.request("GET", f"/o?{SIGNED_QUERY}")
    assert attributes(providers.only_client_span())[URL_FULL] == http_server.url(f"/o?{REDACTED_QUERY}")
    assert http_server.last().target == f"/o?{SIGNED_QUERY}"


def test_preload_false_span_ends_with_the_body(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    response = urllib3.request("GET", http_server.url("/stream/3?delay=0.05"), preload_content=False)
    assert providers.client_spans() == []
    assert b"".join(response.stream(4)).count(b"chunk-") == 3
    assert_lasted(providers.only_client_span(), 0.1)
    response.release_conn()
    assert len(providers.client_spans()) == 1


def test_preload_false_release_without_reading(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    response = urllib3.request("GET", http_server.url("/bytes/100000"), preload_content=False)
    assert providers.client_spans() == []
    response.drain_conn()
    response.release_conn()
    providers.only_client_span()


def test_retries_inside_urlopen_are_one_span(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    retry = urllib3.Retry(total=3, status_forcelist=[503], backoff_factor=0, respect_retry_after_header=False)
    response = urllib3.request("GET", http_server.url("/flaky/2?key=u3"), retries=retry)
    assert response.status == 200
    span = providers.only_client_span()
    assert attributes(span)[HTTP_REQUEST_RESEND_COUNT] == 2


def test_pool_manager_redirects_are_spans_per_hop(
    traced: Any, http_server: HTTPTestServer, providers: Providers
) -> None:
    response = urllib3.request("GET", http_server.url("/redirect/2"))
    assert response.status == 200
    spans = providers.client_spans()
    assert [attributes(span).get(HTTP_REQUEST_RESEND_COUNT, 0) for span in spans] == [0, 1, 2]
    assert [attributes(span)[HTTP_RESPONSE_STATUS_CODE] for span in spans] == [302, 302, 200]
    for span, request in zip(spans, http_server.requests, strict=True):
        assert_propagated(span, request.header("traceparent"))


def test_connection_refused_after_retries(traced: Any, providers: Providers) -> None:
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        urllib3.request("GET", f"http://127.0.0.1:{free_port()}/", retries=urllib3.Retry(1, backoff_factor=0))
    assert_error(providers.only_client_span(), "urllib3.exceptions.MaxRetryError")


def test_timeout(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        urllib3.request("GET", http_server.url("/delay/1"), timeout=0.2, retries=False)  # type: ignore[arg-type]
    assert attributes(providers.only_client_span())[ERROR_TYPE] == "urllib3.exceptions.ReadTimeoutError"


def test_4xx_error_and_hooks(instrument: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    seen: list[Any] = []

    def response_hook(span: trace.Span, request: Any, response: Any) -> None:
        seen.append((request.url, response.status_code))
        raise RuntimeError("ignored")

    instrument(response_hook=response_hook)
    assert urllib3.request("GET", http_server.url("/status/418?password=p")).status == 418
    span = providers.only_client_span()
    assert span.status.status_code is StatusCode.ERROR
    assert seen == [(http_server.url("/status/418?password=REDACTED"), 418)]


def test_uninstrument(instrument: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    instrument().uninstrument()
    assert urllib3.connectionpool.HTTPConnectionPool.urlopen is ORIGINAL_URLOPEN
    urllib3.request("GET", http_server.url("/"))
    assert providers.spans() == []
    assert http_server.last().header("traceparent") is None
