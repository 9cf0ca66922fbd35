"""A finished request leaves no reference cycle behind: its ServerRequest, span and context are freed by
reference counting as soon as the server lets go of them, not later by the cyclic garbage collector (whose
collections such cycles would trigger every few requests, at a cost larger than the request's own bookkeeping).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.instrumentation.apps.support import Captured
from veil.instrumentation._http.server_request import ServerRequest, current_server_request
from veil.instrumentation.asgi import VeilASGIMiddleware
from veil.instrumentation.wsgi import VeilWSGIMiddleware

seen: list[ServerRequest | None] = []


def wsgi_hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    seen.append(current_server_request())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


async def asgi_hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    seen.append(current_server_request())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def wsgi_request(captured: Captured) -> None:
    app = VeilWSGIMiddleware(wsgi_hello, **captured.providers)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1"}  # fmt: skip
    body = app(environ, lambda status, headers, exc_info=None: None)
    assert b"".join(body) == b"hello"
    getattr(body, "close", lambda: None)()


def asgi_request(captured: Captured) -> None:
    app = VeilASGIMiddleware(asgi_hello, **captured.providers)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(app(scope, receive, send))
    finally:
        loop.close()


@pytest.fixture(name="no_collector")
def no_collector_fixture() -> Iterator[None]:
    gc.collect()
    gc.disable()
    seen.clear()
    yield
    gc.enable()
    seen.clear()


@pytest.mark.parametrize("serve", [wsgi_request, asgi_request], ids=["wsgi", "asgi"])
def test_a_finished_request_is_freed_without_the_cyclic_collector(
    captured: Captured, no_collector: None, serve: Callable[[Captured], None]
) -> None:
    serve(captured)
    assert len(seen) == 1 and isinstance(seen[0], ServerRequest)  # the handler found its request
    request = seen.pop()
    assert request.finished
    spans = captured.finished()
    assert len(spans) == 1
    del request
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = [
            type(item).__qualname__
            for item in gc.garbage
            if type(item).__module__.startswith(("veil", "opentelemetry"))
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert garbage == [], garbage
