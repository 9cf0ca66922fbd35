"""requests instrumentation against real loopback servers, and end to end through the OTLP receiver."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import requests
import urllib3
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_RESEND_COUNT, HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.server_attributes import SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import SpanKind
from requests.adapters import HTTPAdapter

from tests.fixtures.http_server import HTTPTestServer, RecordedRequest
from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation._clients import (
    REDACTED_QUERY,
    SIGNED_QUERY,
    Providers,
    assert_error,
    assert_lasted,
    assert_plain_get,
    assert_redirects_in_one_span,
    attributes,
    free_port,
    instrument_fixtures,
    traceparent_ids,
)
from veil.instrumentation.httpx import HTTPXInstrumentor
from veil.instrumentation.requests import RequestsInstrumentor
from veil.instrumentation.urllib3 import URLLib3Instrumentor

ORIGINAL_SEND = requests.Session.send
ORIGINAL_URLOPEN = urllib3.connectionpool.HTTPConnectionPool.urlopen

instrument, traced = instrument_fixtures(RequestsInstrumentor, URLLib3Instrumentor)


def test_one_span_for_requests_over_urllib3(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    headers = {"X-Caller": "1"}
    response = requests.get(http_server.url("/hello?x=1"), headers=headers, timeout=5)
    assert response.text == "ok"
    assert headers == {"X-Caller": "1"}
    traceparent = http_server.last().header("traceparent")
    span = assert_plain_get(providers, http_server.url("/hello?x=1"), http_server.port, traceparent)
    assert span.instrumentation_scope is not None  # the only client span: urllib3 underneath stays quiet
    assert span.instrumentation_scope.name == "veil.instrumentation.requests"
    assert http_server.last().header("traceparent").count(",") == 0  # injected once


@pytest.mark.parametrize("status", [401, 404, 502])
def test_error_statuses(traced: Any, http_server: HTTPTestServer, providers: Providers, status: int) -> None:
    assert requests.get(http_server.url(f"/status/{status}"), timeout=5).status_code == status
    assert_error(providers.only_client_span(), str(status))


def test_redirects_are_one_span_with_resend_count(
    traced: Any, http_server: HTTPTestServer, providers: Providers
) -> None:
    response = requests.get(http_server.url("/redirect/3"), timeout=5)
    assert response.status_code == 200
    assert_redirects_in_one_span(providers, 3, [request.header("traceparent") for request in http_server.requests])


def test_urllib3_retries_count_as_resends(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    session = requests.Session()
    retry = urllib3.Retry(total=3, status_forcelist=[503], backoff_factor=0, respect_retry_after_header=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    response = session.get(http_server.url("/flaky/2?key=requests-retry"), timeout=5)
    assert response.status_code == 200
    span = providers.only_client_span()
    assert attributes(span)[HTTP_REQUEST_RESEND_COUNT] == 2
    assert attributes(span)[HTTP_RESPONSE_STATUS_CODE] == 200
    assert len(http_server.requests) == 3


def test_stream_true_span_ends_with_the_body(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    response = requests.get(http_server.url("/stream/4?delay=0.05"), stream=True, timeout=5)
    assert response.status_code == 200
    assert providers.client_spans() == []
    lines = list(response.iter_lines())
    assert lines == [b"chunk-%d" % index for index in range(4)]
    assert_lasted(providers.only_client_span(), 0.15)


def test_stream_true_closed_early(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    with requests.get(http_server.url("/stream/100?delay=0.01"), stream=True, timeout=5) as response:
        chunks = response.iter_content(8)  # kept: an abandoned generator makes urllib3 close the response
        assert next(chunks) == b"chunk-0\n"
        assert providers.client_spans() == []
    span = providers.only_client_span()
    assert ERROR_TYPE not in attributes(span)


def test_connection_refused(traced: Any, providers: Providers) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{free_port()}/x?Signature=s3cr3t", timeout=5)
    span = providers.only_client_span()
    assert_error(span, "requests.exceptions.ConnectionError")
    assert "s3cr3t" not in str(span.events[0].attributes)
    assert "s3cr3t" not in str(span.status.description)


def test_read_timeout(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    with pytest.raises(requests.ReadTimeout):
        requests.get(http_server.url("/delay/1"), timeout=0.2)
    assert attributes(providers.only_client_span())[ERROR_TYPE] == "requests.exceptions.ReadTimeout"


def test_credentials_and_signed_urls_are_redacted(
    traced: Any, http_server: HTTPTestServer, providers: Providers
) -> None:
    requests.get(f"http://alice:pw@127.0.0.1:{http_server.port}/o?{SIGNED_QUERY}", timeout=5)
    span = providers.only_client_span()
    assert attributes(span)[URL_FULL] == f"http://REDACTED:REDACTED@127.0.0.1:{http_server.port}/o?{REDACTED_QUERY}"
    assert http_server.last().target == f"/o?{SIGNED_QUERY}"


def test_hooks_and_raising_hooks(instrument: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    seen: list[Any] = []

    def request_hook(span: trace.Span, info: Any) -> None:
        seen.append(info)
        raise RuntimeError("hook bug")

    def response_hook(span: trace.Span, request: Any, response: Any) -> None:
        seen.append(response)
        span.set_attribute("app.response_hooked", True)

    instrument(request_hook=request_hook, response_hook=response_hook)
    assert requests.post(http_server.url("/echo?api_key=k"), data=b"abc", timeout=5).status_code == 200
    request_info, response_info = seen
    assert request_info.url == http_server.url("/echo?api_key=REDACTED")
    assert request_info.method == "POST"
    assert isinstance(request_info.native, requests.PreparedRequest)
    assert response_info.status_code == 200
    assert response_info.headers["content-type"] == "application/json"
    assert attributes(providers.only_client_span())["app.response_hooked"] is True


def test_suppressed_and_excluded(instrument: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    instrument(excluded_urls=["/skip"])
    with suppress_http_instrumentation():
        requests.get(http_server.url("/quiet"), timeout=5)
    requests.get(http_server.url("/skip"), timeout=5)
    assert providers.spans() == []
    assert [request.header("traceparent") for request in http_server.requests] == [None, None]


def test_metrics(traced: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    requests.get(http_server.url("/status/404"), timeout=5)
    (point,) = providers.points("http.client.request.duration")
    assert point.attributes[HTTP_RESPONSE_STATUS_CODE] == 404
    assert point.attributes[ERROR_TYPE] == "404"
    assert point.attributes[SERVER_PORT] == http_server.port


def test_uninstrument_restores(instrument: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    requests_instrumentor, urllib3_instrumentor = RequestsInstrumentor(), URLLib3Instrumentor()
    instrument(requests_instrumentor, urllib3_instrumentor)
    assert requests.Session.send is not ORIGINAL_SEND
    requests_instrumentor.uninstrument()
    urllib3_instrumentor.uninstrument()
    assert requests.Session.send is ORIGINAL_SEND
    assert urllib3.connectionpool.HTTPConnectionPool.urlopen is ORIGINAL_URLOPEN
    requests.get(http_server.url("/"), timeout=5)
    assert providers.spans() == []


def test_requests_alone_without_urllib3_instrumentation(
    instrument: Any, http_server: HTTPTestServer, providers: Providers
) -> None:
    instrument(RequestsInstrumentor())
    requests.get(http_server.url("/"), timeout=5)
    assert providers.only_client_span().instrumentation_scope.name == "veil.instrumentation.requests"  # type: ignore[union-attr]


# ------------------------------------------------------------------------------ end to end (OTLP receiver)


def _otlp_provider(receiver: OTLPReceiver, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.http_url("traces"))))
    return provider


def test_two_hop_chain_parent_links_at_the_receiver(http_server: HTTPTestServer, otlp_receiver: OTLPReceiver) -> None:
    """service A --requests--> B (server span, then httpx) --> C; every link is right at the OTLP receiver."""
    provider = _otlp_provider(otlp_receiver, "chain")
    tracer = provider.get_tracer("test.chain")
    requests_instrumentor, urllib3_instrumentor, httpx_instrumentor = (
        RequestsInstrumentor(),
        URLLib3Instrumentor(),
        HTTPXInstrumentor(),
    )
    for instrumentor in (requests_instrumentor, urllib3_instrumentor, httpx_instrumentor):
        instrumentor.instrument(tracer_provider=provider)

    def middle(request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        parent = propagate.extract(request.headers)
        with tracer.start_as_current_span("B handle", context=parent, kind=SpanKind.SERVER):
            downstream = httpx.get(http_server.url("/leaf"), timeout=5)
        return 200, {}, downstream.content

    http_server.route("/middle", middle)
    try:
        with tracer.start_as_current_span("A work"):
            assert requests.get(http_server.url("/middle"), timeout=5).text == "ok"
        provider.force_flush()
        spans = otlp_receiver.wait_for_spans(4, timeout=10)
    finally:
        for instrumentor in (requests_instrumentor, urllib3_instrumentor, httpx_instrumentor):
            instrumentor.uninstrument()
        provider.shutdown()

    by_name = {(span.name, span.kind): span for span in spans}
    assert len(spans) == 4, [(span.name, span.kind) for span in spans]
    root = by_name[("A work", "INTERNAL")]
    clients = [span for span in spans if span.kind == "CLIENT"]
    assert len(clients) == 2
    server = by_name[("B handle", "SERVER")]
    a_client = next(span for span in clients if span.scope_name == "veil.instrumentation.requests")
    b_client = next(span for span in clients if span.scope_name == "veil.instrumentation.httpx")
    assert len({span.trace_id for span in spans}) == 1
    assert root.is_root
    assert a_client.parent_span_id == root.span_id
    assert server.parent_span_id == a_client.span_id
    assert b_client.parent_span_id == server.span_id
    leaf = next(request for request in http_server.requests if request.path == "/leaf")
    assert traceparent_ids(leaf.header("traceparent")) == (b_client.trace_id, b_client.span_id)
    assert a_client.attributes[URL_FULL] == http_server.url("/middle")


def test_otlp_http_exporter_traffic_is_never_traced(http_server: HTTPTestServer, otlp_receiver: OTLPReceiver) -> None:
    """veil's OTLP/HTTP exporter sends with requests/urllib3: with both instrumented, only the app call is traced."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp_receiver.http_url("traces"))))
    instrumentors = (RequestsInstrumentor(), URLLib3Instrumentor())
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
    try:
        requests.get(http_server.url("/business"), timeout=5)
        urllib3.request("GET", http_server.url("/business-urllib3"), timeout=5)
        spans = otlp_receiver.wait_for_spans(2, timeout=10)
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
        provider.shutdown()
    assert sorted(str(span.attributes[URL_FULL]).rsplit("/", 1)[1] for span in spans) == [
        "business",
        "business-urllib3",
    ]
    assert len(otlp_receiver.spans()) == 2  # no span for any export request
    for received in otlp_receiver.requests("traces"):
        assert received.header("traceparent") is None
