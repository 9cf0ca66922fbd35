"""httpx instrumentation against a real loopback server: spans, propagation, streaming, errors, hooks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.semconv._incubating.attributes.http_attributes import HTTP_METHOD, HTTP_URL
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_REQUEST_RESEND_COUNT,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import SpanKind, StatusCode

from tests.fixtures.http_server import HTTPTestServer
from tests.instrumentation._clients import (
    REDACTED_QUERY,
    SIGNED_QUERY,
    Providers,
    assert_children_of,
    assert_error,
    assert_lasted,
    assert_plain_get,
    assert_propagated,
    assert_redirects_in_one_span,
    attributes,
    free_port,
    ids_of,
    instrument_fixtures,
)
from veil import settings as veil_settings
from veil.export.zipkin import ZipkinExporter
from veil.instrumentation.httpx import HTTPXInstrumentor

ORIGINAL_SYNC_SEND = httpx.Client.send
ORIGINAL_ASYNC_SEND = httpx.AsyncClient.send

instrument, traced = instrument_fixtures(HTTPXInstrumentor)


def test_get_records_stable_attributes_and_propagates(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    headers = {"x-caller": "1"}
    with httpx.Client() as client:
        response = client.get(http_server.url("/hello?a=1"), headers=headers)
    assert response.status_code == 200
    assert headers == {"x-caller": "1"}  # the caller's dict is never touched

    traceparent = http_server.last().header("traceparent")
    span = assert_plain_get(providers, http_server.url("/hello?a=1"), http_server.port, traceparent)
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET


def test_client_span_is_child_of_current_span(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    tracer = providers.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("parent") as parent:
        httpx.get(http_server.url("/"))  # module-level helper
    span = providers.only_client_span()
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id


@pytest.mark.parametrize("status", [404, 500, 503])
def test_4xx_and_5xx_are_errors(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers, status: int
) -> None:
    response = httpx.get(http_server.url(f"/status/{status}"))
    assert response.status_code == status
    span = providers.only_client_span()
    assert_error(span, str(status))
    assert attributes(span)[HTTP_RESPONSE_STATUS_CODE] == status


def test_redirects_followed_count_as_resends(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    with httpx.Client(follow_redirects=True) as client:
        response = client.get(http_server.url("/redirect/2"))
    assert response.status_code == 200
    traceparents = [request.header("traceparent") for request in http_server.requests]
    span = assert_redirects_in_one_span(providers, 2, traceparents)
    assert attributes(span)[HTTP_RESPONSE_STATUS_CODE] == 200


def test_redirect_not_followed_is_one_span_without_resend(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    response = httpx.get(http_server.url("/redirect/1"))
    assert response.status_code == 302
    span = providers.only_client_span()
    assert HTTP_REQUEST_RESEND_COUNT not in attributes(span)
    assert span.status.status_code is StatusCode.UNSET


def test_streaming_span_ends_when_body_is_read(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    with httpx.Client() as client, client.stream("GET", http_server.url("/stream/4?delay=0.05")) as response:
        assert response.status_code == 200
        assert providers.client_spans() == []  # headers arrived, the body has not
        chunks = list(response.iter_bytes())
        assert b"".join(chunks) == b"".join(b"chunk-%d\n" % index for index in range(4))
        span = providers.only_client_span()  # ended when the body was exhausted
    assert_lasted(span, 0.15)
    assert span.status.status_code is StatusCode.UNSET


def test_streaming_span_ends_on_early_close(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    with httpx.stream("GET", http_server.url("/stream/50?delay=0.01")) as response:
        for _chunk in response.iter_bytes():
            break
        assert providers.client_spans() == []
    span = providers.only_client_span()
    assert span.status.status_code is StatusCode.UNSET
    assert ERROR_TYPE not in attributes(span)


def test_connection_refused_sets_error_type_and_reraises(traced: HTTPXInstrumentor, providers: Providers) -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    span = providers.only_client_span()
    assert_error(span, "httpx.ConnectError")
    assert HTTP_RESPONSE_STATUS_CODE not in attributes(span)
    assert [event.name for event in span.events] == ["exception"]


def test_timeout_sets_error_type(traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(http_server.url("/delay/1"), timeout=0.2)
    span = providers.only_client_span()
    assert attributes(span)[ERROR_TYPE] == "httpx.ReadTimeout"


def test_url_credentials_and_signed_parameters_are_redacted(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    url = f"http://user:hunter2@127.0.0.1:{http_server.port}/object?{SIGNED_QUERY}"
    httpx.get(url)
    span = providers.only_client_span()
    assert (
        attributes(span)[URL_FULL] == f"http://REDACTED:REDACTED@127.0.0.1:{http_server.port}/object?{REDACTED_QUERY}"
    )
    # the wire is untouched
    assert http_server.last().target == f"/object?{SIGNED_QUERY}"
    assert http_server.last().header("authorization") is not None


def test_redaction_applies_to_error_messages(traced: HTTPXInstrumentor, providers: Providers) -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{free_port()}/x?sig=topsecret")
    span = providers.only_client_span()
    event_attributes = dict(span.events[0].attributes or {})
    assert "topsecret" not in str(event_attributes)
    assert "topsecret" not in (span.status.description or "")


def test_non_ascii_and_huge_urls(traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers) -> None:
    httpx.get(http_server.url("/caf\u00e9/\u65e5\u672c?q=\u00fc"))
    huge = "a" * 20000
    httpx.get(http_server.url(f"/huge?value={huge}&sig=s"))
    first, second = providers.client_spans()
    assert attributes(first)[URL_FULL] == http_server.url("/caf%C3%A9/%E6%97%A5%E6%9C%AC?q=%C3%BC")
    assert attributes(second)[URL_FULL] == http_server.url(f"/huge?value={huge}&sig=REDACTED")
    assert http_server.requests[0].path == "/caf%C3%A9/%E6%97%A5%E6%9C%AC"


def test_unknown_method_is_other(traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers) -> None:
    httpx.request("PURGE", http_server.url("/"))
    span = providers.only_client_span()
    assert span.name == "HTTP"
    assert attributes(span)[HTTP_REQUEST_METHOD] == "_OTHER"
    assert attributes(span)[HTTP_REQUEST_METHOD_ORIGINAL] == "PURGE"


def test_custom_transport_is_traced_and_receives_propagation(traced: HTTPXInstrumentor, providers: Providers) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, content=b"made")

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        assert client.post("http://service.internal/things", content=b"body").status_code == 201
    span = providers.only_client_span()
    assert attributes(span)[SERVER_ADDRESS] == "service.internal"
    assert attributes(span)[SERVER_PORT] == 80
    assert_propagated(span, seen[0].headers.get("traceparent"))


def test_suppressed_instrumentation_neither_traces_nor_injects(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    with suppress_http_instrumentation():
        httpx.get(http_server.url("/a"))
    with suppress_instrumentation():
        httpx.get(http_server.url("/b"))
    assert providers.spans() == []
    assert [request.header("traceparent") for request in http_server.requests] == [None, None]


def test_excluded_urls(instrument: Any, http_server: HTTPTestServer, providers: Providers) -> None:
    instrument(excluded_urls="healthz,/internal/")
    httpx.get(http_server.url("/healthz"))
    httpx.get(http_server.url("/internal/x"))
    httpx.get(http_server.url("/kept"))
    span = providers.only_client_span()
    assert attributes(span)[URL_FULL].endswith("/kept")
    assert http_server.requests[0].header("traceparent") is None


def test_header_capture_redacts_sensitive_headers(
    instrument: Any, http_server: HTTPTestServer, providers: Providers
) -> None:
    instrument(capture_request_headers=[".*"], capture_response_headers=["content-.*"])
    httpx.get(http_server.url("/"), headers={"Authorization": "Bearer abc.def", "X-Trace-Me": "yes"})
    captured = attributes(providers.only_client_span())
    assert captured["http.request.header.authorization"] == ("Bearer [REDACTED]",)
    assert captured["http.request.header.x-trace-me"] == ("yes",)
    assert captured["http.response.header.content-length"] == ("2",)


def test_hooks_get_shared_info_and_raising_hooks_are_harmless(
    instrument: Any, http_server: HTTPTestServer, providers: Providers
) -> None:
    calls: list[tuple[str, Any]] = []

    def request_hook(span: trace.Span, info: Any) -> None:
        calls.append(("request", info))
        span.set_attribute("hooked", True)
        raise RuntimeError("boom")

    def response_hook(span: trace.Span, request: Any, response: Any) -> None:
        calls.append(("response", response))
        raise RuntimeError("boom")

    instrument(request_hook=request_hook, response_hook=response_hook)
    response = httpx.get(http_server.url("/x?token=secret"), headers={"x-a": "1"})
    assert response.text == "ok"
    (kind, request_info), (_, response_info) = calls
    assert kind == "request"
    assert request_info.method == "GET"
    assert request_info.url == http_server.url("/x?token=REDACTED")
    assert request_info.headers["x-a"] == "1"
    assert isinstance(request_info.native, httpx.Request)
    assert response_info.status_code == 200
    assert isinstance(response_info.native, httpx.Response)
    assert attributes(providers.only_client_span())["hooked"] is True


def test_metrics_duration_and_sizes(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    httpx.post(http_server.url("/bytes/7"), content=b"12345")
    (duration,) = providers.points("http.client.request.duration")
    assert duration.count == 1
    assert dict(duration.attributes) == {
        HTTP_REQUEST_METHOD: "POST",
        SERVER_ADDRESS: "127.0.0.1",
        SERVER_PORT: http_server.port,
        HTTP_RESPONSE_STATUS_CODE: 200,
        NETWORK_PROTOCOL_VERSION: "1.1",
    }
    assert duration.explicit_bounds[0] == 0.005
    (request_size,) = providers.points("http.client.request.body.size")
    assert request_size.sum == 5
    (response_size,) = providers.points("http.client.response.body.size")
    assert response_size.sum == 7


def test_dup_mode_adds_old_names(
    instrument: Any, http_server: HTTPTestServer, providers: Providers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(veil_settings, "_current", veil_settings.Settings.load({}, semconv_http_mode="dup"))
    instrument()
    httpx.get(http_server.url("/"))
    span_attributes = attributes(providers.only_client_span())
    assert span_attributes[HTTP_METHOD] == "GET"
    assert span_attributes[HTTP_URL] == http_server.url("/")
    assert span_attributes[HTTP_REQUEST_METHOD] == "GET"
    assert providers.points("http.client.duration")


def test_uninstrument_restores_original_functions(
    instrument: Any, http_server: HTTPTestServer, providers: Providers
) -> None:
    instrumentor = instrument()
    assert httpx.Client.send is not ORIGINAL_SYNC_SEND
    instrumentor.uninstrument()
    assert httpx.Client.send is ORIGINAL_SYNC_SEND
    assert httpx.AsyncClient.send is ORIGINAL_ASYNC_SEND
    httpx.get(http_server.url("/"))
    assert providers.spans() == []
    assert http_server.last().header("traceparent") is None


def test_instrument_client_traces_one_client_only(http_server: HTTPTestServer, providers: Providers) -> None:
    with httpx.Client() as traced_client, httpx.Client() as other:
        HTTPXInstrumentor.instrument_client(
            traced_client, tracer_provider=providers.tracer_provider, meter_provider=providers.meter_provider
        )
        traced_client.get(http_server.url("/one"))
        other.get(http_server.url("/two"))
        assert len(providers.client_spans()) == 1
        HTTPXInstrumentor.uninstrument_client(traced_client)
        traced_client.get(http_server.url("/three"))
    assert len(providers.client_spans()) == 1
    assert [request.header("traceparent") is not None for request in http_server.requests] == [True, False, False]


def test_instrument_client_and_global_instrumentation_do_not_double_up(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    with httpx.Client() as client:
        HTTPXInstrumentor.instrument_client(client, tracer_provider=providers.tracer_provider)
        client.get(http_server.url("/"))
    providers.only_client_span()


def test_zipkin_exporter_traffic_is_never_traced(traced: HTTPXInstrumentor, http_server: HTTPTestServer) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    exporter = ZipkinExporter(http_server.url("/api/v2/spans"), compression=None)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    HTTPXInstrumentor().uninstrument()
    HTTPXInstrumentor().instrument(tracer_provider=provider)
    try:
        httpx.get(http_server.url("/business"))
    finally:
        provider.shutdown()
    paths = [request.path for request in http_server.requests]
    assert paths == ["/business", "/api/v2/spans"]  # exactly one span exported, for the business call
    business, export = http_server.requests
    assert business.header("traceparent") is not None
    assert export.header("traceparent") is None
    assert b'"kind":"CLIENT"' in export.body.replace(b" ", b"")


# --------------------------------------------------------------------------------------------- async


async def test_async_client_span_and_propagation(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(http_server.url("/async"))
    assert response.status_code == 200
    span = providers.only_client_span()
    assert span.name == "GET"
    assert_propagated(span, http_server.last().header("traceparent"))


async def test_async_streaming_ends_with_body(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    async with httpx.AsyncClient() as client, client.stream("GET", http_server.url("/stream/3?delay=0.05")) as response:
        assert providers.client_spans() == []
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert body.count(b"chunk-") == 3
    assert_lasted(providers.only_client_span(), 0.1)


async def test_concurrent_async_calls_keep_their_own_parents(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    tracer = providers.tracer_provider.get_tracer("test")

    async def one(index: int, client: httpx.AsyncClient) -> tuple[str, str]:
        with tracer.start_as_current_span(f"parent-{index}") as parent:
            await asyncio.sleep(0.001 * (index % 3))
            await client.get(http_server.url(f"/delay/0.0{index % 5}?i={index}"))
            return ids_of(parent)  # type: ignore[arg-type]

    async with httpx.AsyncClient() as client:
        parents = await asyncio.gather(*(one(index, client) for index in range(20)))
    assert len(parents) == 20
    arrived = {request.query["i"][0]: request.header("traceparent") for request in http_server.requests}
    assert_children_of(providers.client_spans(), parents, arrived)


async def test_async_hooks_are_awaited_and_may_raise(
    instrument: Any, http_server: HTTPTestServer, providers: Providers
) -> None:
    seen: list[str] = []

    async def async_request_hook(span: trace.Span, info: Any) -> None:
        await asyncio.sleep(0)
        seen.append(f"request {info.method}")

    async def async_response_hook(span: trace.Span, request: Any, response: Any) -> None:
        seen.append(f"response {response.status_code}")
        span.set_attribute("async.hooked", True)
        raise ValueError("broken hook")

    instrument(async_request_hook=async_request_hook, async_response_hook=async_response_hook)
    async with httpx.AsyncClient() as client:
        response = await client.get(http_server.url("/"))
    assert response.text == "ok"
    assert seen == ["request GET", "response 200"]
    assert attributes(providers.only_client_span())["async.hooked"] is True


async def test_async_connection_refused(traced: HTTPXInstrumentor, providers: Providers) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/")
    assert attributes(providers.only_client_span())[ERROR_TYPE] == "httpx.ConnectError"


def test_instrumentation_adds_little_wall_time_sanity(
    traced: HTTPXInstrumentor, http_server: HTTPTestServer, providers: Providers
) -> None:
    """Not a speed test: just a generous "does not block" bound on 20 loopback calls."""
    start = time.monotonic()
    with httpx.Client() as client:
        for _ in range(20):
            client.get(http_server.url("/"))
    assert time.monotonic() - start < 10
    assert len(providers.client_spans()) == 20
