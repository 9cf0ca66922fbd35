"""veil instrumentation for the aiohttp client (3.9 to < 4): one CLIENT span per `ClientSession` request.

What is patched: `aiohttp.ClientSession._request`, the coroutine behind `session.get/post/request(...)`, so
sessions created before `instrument()` are traced too. `instrument_client(session)` traces one session only
(an attribute on that instance; the class is untouched). Redirects followed by aiohttp are counted in
http.request.resend_count. The span ends when the response body has been read to its end, or the response is
released or closed (`async with session.get(...)` exit, `release()`), not when the headers arrive.

What is recorded: the stable HTTP client conventions (span `{method}`, url.full redacted, server.address/port,
http.response.status_code, network.protocol.version, error.type), 4xx and 5xx as errors (also when
`raise_for_status` turns them into `ClientResponseError`), http.client.request.duration and body sizes.
Propagation headers go into a copy of the caller's headers. Hooks: request_hook / response_hook (sync) and
async_request_hook / async_response_hook (awaited). Nothing is traced inside `suppress_instrumentation()` /
`suppress_http_instrumentation()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from veil._guard import log_once
from veil.instrumentation._http import (
    ClientInstrumentor,
    ClientRequest,
    ClientTelemetry,
    FinishAfter,
    client_telemetry,
    content_length,
)

__all__ = ["AioHttpClientInstrumentor"]

_instruments = ("aiohttp >= 3.9, < 4",)
_LIBRARY = "aiohttp-client"
_MODULE = "veil.instrumentation.aiohttp_client"


def _url_of(session: aiohttp.ClientSession, target: Any, params: Any) -> URL:
    build = getattr(session, "_build_url", None)
    url = build(target) if build is not None else URL(str(target))
    if params:
        url = url.extend_query(params)
    return url


def _start(
    telemetry: ClientTelemetry, session: aiohttp.ClientSession, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ClientRequest | None, dict[str, Any]]:
    try:
        method = str(args[0] if args else kwargs.get("method", "GET")).upper()
        target = args[1] if len(args) > 1 else kwargs.get("str_or_url")
        url = _url_of(session, target, kwargs.get("params"))
        headers: CIMultiDict[str] = CIMultiDict(kwargs.get("headers") or ())
        data = kwargs.get("data")
        call = telemetry.start(
            method,
            str(url),
            native=kwargs,
            headers=headers.items,
            scheme=url.scheme,
            server_address=url.host or None,
            server_port=url.port,
            request_body_size=len(data) if isinstance(data, (bytes, bytearray, str)) else None,
        )
        if call is None:
            return None, kwargs
        call.inject(headers)
        return call, {**kwargs, "headers": headers}
    except Exception:
        log_once("aiohttp.start", "veil: cannot trace an aiohttp request (it is sent untraced)", exc_info=True)
        return None, kwargs


def _follow_body(call: ClientRequest, response: aiohttp.ClientResponse) -> None:
    try:
        content = response.content
        if response.closed or content is None:
            call.finish()
            return
        content.on_eof(call.finish)
        for name in ("release", "close"):
            object.__setattr__(response, name, FinishAfter(call, getattr(response, name)))
    except Exception:
        log_once("aiohttp.body", "veil: cannot follow an aiohttp response body", exc_info=True)
        call.finish()


async def _request(
    telemetry: ClientTelemetry,
    wrapped: Callable[..., Any],
    session: aiohttp.ClientSession,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    call, kwargs = _start(telemetry, session, args, kwargs)
    if call is None:
        return await wrapped(*args, **kwargs)
    token = call.activate()
    try:
        await call.run_async_request_hook()
        response = await wrapped(*args, **kwargs)
    except aiohttp.ClientResponseError as error:
        if error.status:
            call.set_response(error.status, resend_count=len(error.history or ()))
            call.finish()
        else:
            call.finish(error)
        raise
    except BaseException as error:
        call.finish(error)
        raise
    finally:
        call.deactivate(token)
    try:
        version = response.version
        info = call.set_response(
            response.status,
            headers=response.headers.items,
            body_size=content_length(response.headers.get("Content-Length")),
            protocol_version=f"{version.major}.{version.minor}" if version is not None else None,
            resend_count=len(response.history),
            native=response,
        )
    except Exception:
        log_once("aiohttp.response", "veil: cannot record an aiohttp response", exc_info=True)
        info = None
    if info is not None and telemetry.async_response_hook is not None:
        await call.run_async_response_hook(info)
    _follow_body(call, response)
    return response


class _SessionRequest:
    """`_request` of one instrumented session (instance attribute set by `instrument_client`)."""

    def __init__(
        self, telemetry: ClientTelemetry, session: aiohttp.ClientSession, original: Callable[..., Any]
    ) -> None:
        self.telemetry = telemetry
        self.session = session
        self.original = original

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _request(self.telemetry, self.original, self.session, args, kwargs)


class AioHttpClientInstrumentor(ClientInstrumentor):
    """Traces aiohttp client sessions. `instrument(**options)` patches every session, `instrument_client` one.

    Options (read once): tracer_provider, meter_provider, request_hook(span, request_info),
    response_hook(span, request_info, response_info), async_request_hook, async_response_hook, excluded_urls,
    capture_request_headers, capture_response_headers, sanitize_fields, sensitive_query_parameters.
    """

    _library = _LIBRARY
    _module = _MODULE
    _dependencies = _instruments
    _patches = ((aiohttp.ClientSession, "_request", _request, True),)

    @staticmethod
    def instrument_client(session: aiohttp.ClientSession, **options: Any) -> None:
        """Trace this one session with its own options; a second call replaces the first."""
        AioHttpClientInstrumentor.uninstrument_client(session)
        telemetry = client_telemetry(_LIBRARY, _MODULE, options, asynchronous=True)
        # object.__setattr__: ClientSession warns about unknown attributes set the ordinary way.
        object.__setattr__(session, "_request", _SessionRequest(telemetry, session, session._request))

    @staticmethod
    def uninstrument_client(session: aiohttp.ClientSession) -> None:
        """Stop tracing a session instrumented with `instrument_client`."""
        if isinstance(vars(session).get("_request"), _SessionRequest):
            object.__delattr__(session, "_request")
