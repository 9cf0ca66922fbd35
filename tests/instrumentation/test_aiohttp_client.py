"""aiohttp client instrumentation against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.url_attributes import URL_FULL

from tests.instrumentation._clients import (
    REDACTED_QUERY,
    SIGNED_QUERY,
    Providers,
    assert_children_of,
    assert_error,
    assert_lasted,
    assert_plain_get,
    assert_redirects_in_one_span,
    attributes,
    free_port,
    ids_of,
    instrument_fixtures,
)
from veil.instrumentation.aiohttp_client import AioHttpClientInstrumentor

ORIGINAL_REQUEST = aiohttp.ClientSession._request

instrument, traced = instrument_fixtures(AioHttpClientInstrumentor)


class Server:
    def __init__(self, server: TestServer, seen: list[web.Request]) -> None:
        self.server = server
        self.seen = seen

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    seen: list[web.Request] = []

    async def plain(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(text="ok")

    async def status(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def redirect(request: web.Request) -> web.Response:
        seen.append(request)
        remaining = int(request.match_info["n"])
        if remaining:
            raise web.HTTPFound(f"/redirect/{remaining - 1}")
        return web.Response(text="redirected")

    async def stream(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        response = web.StreamResponse()
        await response.prepare(request)
        for index in range(int(request.query.get("n", "3"))):
            await asyncio.sleep(float(request.query.get("delay", "0.05")))
            await response.write(b"chunk-%d\n" % index)
        await response.write_eof()
        return response

    async def delay(request: web.Request) -> web.Response:
        seen.append(request)
        await asyncio.sleep(float(request.match_info["seconds"]))
        return web.Response(text="late")

    app = web.Application()
    app.router.add_route("*", "/", plain)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/stream", stream)
    app.router.add_get("/delay/{seconds}", delay)
    app.router.add_get("/{tail:.*}", plain)
    test_server = TestServer(app, host="127.0.0.1", port=0)
    await test_server.start_server()
    yield Server(test_server, seen)
    await test_server.close()


async def test_get(traced: Any, server: Server, providers: Providers) -> None:
    headers = {"X-Mine": "1"}
    async with aiohttp.ClientSession() as session, session.get(server.url("/a?b=1"), headers=headers) as response:
        assert await response.text() == "ok"
    assert headers == {"X-Mine": "1"}
    assert_plain_get(providers, server.url("/a?b=1"), server.port, server.seen[-1].headers.get("traceparent"))


async def test_session_created_before_instrument_is_traced(
    instrument: Any, server: Server, providers: Providers
) -> None:
    async with aiohttp.ClientSession() as session:
        instrument()
        async with session.get(server.url("/")) as response:
            await response.read()
    providers.only_client_span()


async def test_span_ends_with_the_body(traced: Any, server: Server, providers: Providers) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.get(server.url("/stream?n=3&delay=0.05"))
        assert providers.client_spans() == []
        assert (await response.read()).count(b"chunk-") == 3
        span = providers.only_client_span()
        response.release()
    assert_lasted(span, 0.1)
    assert len(providers.client_spans()) == 1


async def test_span_ends_on_context_exit_without_reading(traced: Any, server: Server, providers: Providers) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url("/stream?n=20&delay=0.01")) as response:
            await response.content.readline()
            assert providers.client_spans() == []
        providers.only_client_span()


async def test_error_status_and_raise_for_status(traced: Any, server: Server, providers: Providers) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url("/status/404")) as response:
            assert response.status == 404
        with pytest.raises(aiohttp.ClientResponseError):
            await session.get(server.url("/status/500"), raise_for_status=True)
    first, second = providers.client_spans()
    assert_error(first, "404")
    assert_error(second, "500")
    assert attributes(second)[HTTP_RESPONSE_STATUS_CODE] == 500


async def test_redirects(traced: Any, server: Server, providers: Providers) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.url("/redirect/2")) as response:
        assert await response.text() == "redirected"
    assert_redirects_in_one_span(providers, 2, [request.headers.get("traceparent") for request in server.seen])


async def test_connection_refused(traced: Any, providers: Providers) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get(f"http://127.0.0.1:{free_port()}/")
    span = providers.only_client_span()
    assert attributes(span)[ERROR_TYPE].startswith("aiohttp.")
    assert "ClientConnectorError" in attributes(span)[ERROR_TYPE]


async def test_timeout(traced: Any, server: Server, providers: Providers) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as session:
        with pytest.raises(asyncio.TimeoutError):
            await session.get(server.url("/delay/1"))
    assert "Timeout" in attributes(providers.only_client_span())[ERROR_TYPE]


async def test_redaction(traced: Any, server: Server, providers: Providers) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url(f"/s?{SIGNED_QUERY}")) as response:
            await response.read()
        async with session.get(server.url("/p"), params={"token": "t0k", "x": "1"}) as response:
            await response.read()
    first, second = providers.client_spans()
    assert attributes(first)[URL_FULL] == server.url(f"/s?{REDACTED_QUERY}")
    assert attributes(second)[URL_FULL] == server.url("/p?token=REDACTED&x=1")


async def test_concurrent_requests_keep_their_own_context(traced: Any, server: Server, providers: Providers) -> None:
    tracer = providers.tracer_provider.get_tracer("test")

    async def one(session: aiohttp.ClientSession, index: int) -> tuple[str, str]:
        with tracer.start_as_current_span(f"parent-{index}") as parent:
            await asyncio.sleep(0.001 * (index % 4))
            async with session.get(server.url(f"/delay/0.0{index % 3}?i={index}")) as response:
                await response.read()
            return ids_of(parent)  # type: ignore[arg-type]

    async with aiohttp.ClientSession() as session:
        parents = await asyncio.gather(*(one(session, index) for index in range(25)))
    assert len(parents) == 25
    arrived = {request.query["i"]: request.headers.get("traceparent") for request in server.seen}
    assert_children_of(providers.client_spans(), parents, arrived)
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_hooks_sync_and_async(instrument: Any, server: Server, providers: Providers) -> None:
    seen: list[str] = []

    def request_hook(span: trace.Span, info: Any) -> None:
        seen.append(f"sync request {info.url}")
        raise RuntimeError("ignored")

    async def async_response_hook(span: trace.Span, request: Any, response: Any) -> None:
        seen.append(f"async response {response.status_code}")
        span.set_attribute("hooked", True)

    instrument(request_hook=request_hook, async_response_hook=async_response_hook)
    async with aiohttp.ClientSession() as session, session.get(server.url("/h?secret=x")) as response:
        assert await response.text() == "ok"
    assert seen == [f"sync request {server.url('/h?secret=REDACTED')}", "async response 200"]
    assert attributes(providers.only_client_span())["hooked"] is True


async def test_suppressed(traced: Any, server: Server, providers: Providers) -> None:
    async with aiohttp.ClientSession() as session:
        with suppress_http_instrumentation():
            async with session.get(server.url("/")) as response:
                await response.read()
    assert providers.spans() == []
    assert "traceparent" not in server.seen[-1].headers


async def test_instrument_client_one_session(server: Server, providers: Providers) -> None:
    async with aiohttp.ClientSession() as traced_session, aiohttp.ClientSession() as other:
        AioHttpClientInstrumentor.instrument_client(traced_session, tracer_provider=providers.tracer_provider)
        async with traced_session.get(server.url("/one")) as response:
            await response.read()
        async with other.get(server.url("/two")) as response:
            await response.read()
        AioHttpClientInstrumentor.uninstrument_client(traced_session)
        async with traced_session.get(server.url("/three")) as response:
            await response.read()
    providers.only_client_span()
    assert ["traceparent" in request.headers for request in server.seen] == [True, False, False]


async def test_uninstrument(instrument: Any, server: Server, providers: Providers) -> None:
    instrument().uninstrument()
    assert aiohttp.ClientSession._request is ORIGINAL_REQUEST
    async with aiohttp.ClientSession() as session, session.get(server.url("/")) as response:
        await response.read()
    assert providers.spans() == []
