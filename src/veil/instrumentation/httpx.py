"""veil instrumentation for httpx (0.24 to < 1): sync and async clients, one CLIENT span per `send()`.

What is patched: `httpx.Client.send` and `httpx.AsyncClient.send`, so every request made through a client is
traced whatever its transport (default, custom, mounted, `MockTransport`), and so are the module-level helpers
(`httpx.get(...)`, `httpx.stream(...)`), which build a client internally. `instrument_client(client)` traces
one client only (an attribute on that instance; the class is untouched).

What is recorded: the stable HTTP client conventions (span `{method}`, http.request.method, url.full with
credentials and signed-URL parameters redacted, server.address/port, http.response.status_code,
network.protocol.version, error.type, http.request.resend_count for followed redirects and auth retries),
4xx and 5xx as errors, http.client.request.duration and body sizes. The span lasts until the response body is
fully read or the response is closed, so `client.stream(...)` / `iter_bytes()` are timed to their end.
Propagation headers are written into the `httpx.Request` being sent (built by httpx from the caller's headers,
which are never touched). Nothing is traced inside `suppress_instrumentation()` /
`suppress_http_instrumentation()`, which is how veil's own exporters stay invisible.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx

from veil._guard import log_once
from veil.instrumentation._http import (
    ClientInstrumentor,
    ClientRequest,
    ClientTelemetry,
    ResponseInfo,
    client_telemetry,
    content_length,
    protocol_version_of,
)

__all__ = ["HTTPXInstrumentor"]

_instruments = ("httpx >= 0.24, < 1",)
_LIBRARY = "httpx"
_MODULE = "veil.instrumentation.httpx"
_CONTENT_LENGTH_SIZE = len(b"content-length")


def _content_length(headers: httpx.Headers) -> int | None:
    """Content-Length as a number; None when absent, repeated or not a number. Scans the raw pairs: `get`
    raises (and catches) a KeyError inside when the header is absent, and decoding every value costs more.
    """
    found: bytes | None = None
    for key, value in headers.raw:
        if len(key) == _CONTENT_LENGTH_SIZE and key.lower() == b"content-length":
            if found is not None:
                return None  # two Content-Length headers: no trustworthy size
            found = value
    return None if found is None else content_length(found)


def _start(telemetry: ClientTelemetry, request: httpx.Request) -> ClientRequest | None:
    try:
        url = request.url
        call = telemetry.start(
            request.method,
            str(url),
            native=request,
            headers=request.headers.multi_items,
            scheme=url.scheme,
            server_address=url.host or None,
            server_port=url.port,
            request_body_size=_content_length(request.headers),
        )
        if call is not None:
            call.inject(request.headers)
        return call
    except Exception:
        log_once("httpx.start", "veil: cannot trace an httpx request (it is sent untraced)", exc_info=True)
        return None


def _set_response(call: ClientRequest, response: httpx.Response) -> ResponseInfo | None:
    try:
        return call.set_response(
            response.status_code,
            headers=response.headers.multi_items,
            body_size=_content_length(response.headers),
            protocol_version=protocol_version_of(response.http_version),
            resend_count=len(response.history),
            native=response,
        )
    except Exception:
        log_once("httpx.response", "veil: cannot record an httpx response", exc_info=True)
        return None


def _follow_body(call: ClientRequest, response: httpx.Response) -> None:
    """End the span now if the body is already read and closed, else when it is."""
    try:
        if response.is_closed:
            call.finish()
        elif isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _AsyncBody(response.stream, call)
        else:
            response.stream = _SyncBody(response.stream, call)
    except Exception:
        log_once("httpx.body", "veil: cannot follow an httpx response body", exc_info=True)
        call.finish()


class _SyncBody(httpx.SyncByteStream):
    """The response stream, ending the span when the body is exhausted, fails or is closed."""

    __slots__ = ("_call", "_stream")

    def __init__(self, stream: httpx.SyncByteStream, call: ClientRequest) -> None:
        self._stream = stream
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except GeneratorExit:
            raise
        except BaseException as error:
            self._call.finish(error)
            raise
        self._call.finish()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._call.finish()


class _AsyncBody(httpx.AsyncByteStream):
    __slots__ = ("_call", "_stream")

    def __init__(self, stream: httpx.AsyncByteStream, call: ClientRequest) -> None:
        self._stream = stream
        self._call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as error:
            self._call.finish(error)
            raise
        self._call.finish()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._call.finish()


def _request_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("request")


def _send_sync(
    telemetry: ClientTelemetry,
    wrapped: Callable[..., httpx.Response],
    client: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> httpx.Response:
    request = _request_of(args, kwargs)
    call = _start(telemetry, request) if isinstance(request, httpx.Request) else None
    if call is None:
        return wrapped(*args, **kwargs)
    response: httpx.Response = call.run(wrapped, args, kwargs)
    _set_response(call, response)
    _follow_body(call, response)
    return response


async def _send_async(
    telemetry: ClientTelemetry, wrapped: Callable[..., Any], client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> httpx.Response:
    request = _request_of(args, kwargs)
    call = _start(telemetry, request) if isinstance(request, httpx.Request) else None
    if call is None:
        return await wrapped(*args, **kwargs)  # type: ignore[no-any-return]
    response: httpx.Response = await call.run_async(wrapped, args, kwargs)
    info = _set_response(call, response)
    if info is not None and telemetry.async_response_hook is not None:
        await call.run_async_response_hook(info)
    _follow_body(call, response)
    return response


class _ClientSend:
    """`send` of one instrumented client (instance attribute set by `instrument_client`)."""

    def __init__(self, telemetry: ClientTelemetry, original: Callable[..., Any], asynchronous: bool) -> None:
        self.telemetry = telemetry
        self.original = original
        self.asynchronous = asynchronous

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.asynchronous:
            return _send_async(self.telemetry, self.original, None, args, kwargs)
        return _send_sync(self.telemetry, self.original, None, args, kwargs)


class HTTPXInstrumentor(ClientInstrumentor):
    """Traces httpx clients. `instrument(**options)` patches every client; `instrument_client` one client.

    Options (all optional; read once): tracer_provider, meter_provider, request_hook(span, request_info),
    response_hook(span, request_info, response_info), async_request_hook / async_response_hook (awaited, for
    `AsyncClient`), excluded_urls, capture_request_headers, capture_response_headers, sanitize_fields,
    sensitive_query_parameters.
    """

    _library = _LIBRARY
    _module = _MODULE
    _dependencies = _instruments
    _patches = ((httpx.Client, "send", _send_sync, False), (httpx.AsyncClient, "send", _send_async, True))

    @staticmethod
    def instrument_client(client: httpx.Client | httpx.AsyncClient, **options: Any) -> None:
        """Trace this one client (sync or async) with its own options; a second call replaces the first.

        Works with or without `instrument()`: requests are never traced twice.
        """
        HTTPXInstrumentor.uninstrument_client(client)
        asynchronous = isinstance(client, httpx.AsyncClient)
        telemetry = client_telemetry(_LIBRARY, _MODULE, options, asynchronous=asynchronous)
        client.send = _ClientSend(telemetry, client.send, asynchronous)  # type: ignore[method-assign]

    @staticmethod
    def uninstrument_client(client: httpx.Client | httpx.AsyncClient) -> None:
        """Stop tracing a client instrumented with `instrument_client` (other clients are unaffected)."""
        if isinstance(vars(client).get("send"), _ClientSend):
            del client.send
