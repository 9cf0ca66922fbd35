"""User hooks, one signature for every library: what they are given and how they are called.

`request_hook(span, RequestInfo)` when the span starts, `response_hook(span, RequestInfo, ResponseInfo)`
before it ends (async clients also take awaited variants). A hook that raises is logged once, never raised.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from opentelemetry.trace import Span

from veil._guard import call_guarded


@dataclass(frozen=True)
class RequestInfo:
    """What a hook learns about a request, identical for every library.

    `url` is the full URL with credentials and sensitive query values already redacted; `headers` maps
    lowercased names to values (repeated headers joined with `,`); `native` is the library's own object (WSGI
    environ, ASGI scope, Django HttpRequest, httpx.Request, ...).
    """

    __slots__ = ("headers", "method", "native", "url")
    method: str
    url: str
    headers: Mapping[str, str]
    native: object


@dataclass(frozen=True)
class ResponseInfo:
    """What a response hook learns about the response: status (None when none was sent), headers, native."""

    __slots__ = ("headers", "native", "status_code")
    status_code: int | None
    headers: Mapping[str, str]
    native: object


RequestHook = Callable[[Span, RequestInfo], None]
ResponseHook = Callable[[Span, RequestInfo, ResponseInfo], None]
AsyncRequestHook = Callable[[Span, RequestInfo], Awaitable[None]]
AsyncResponseHook = Callable[[Span, RequestInfo, ResponseInfo], Awaitable[None]]


def call_request_hook(hook: RequestHook, span: Span, info: RequestInfo) -> None:
    """Call a user's request hook; if it raises, log once and carry on."""
    call_guarded("request_hook", hook, span, info)


def call_response_hook(hook: ResponseHook, span: Span, request: RequestInfo, response: ResponseInfo) -> None:
    """Call a user's response hook; if it raises, log once and carry on."""
    call_guarded("response_hook", hook, span, request, response)


def joined_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The `headers` of a RequestInfo / ResponseInfo: lowercased names, repeated headers joined with `,`."""
    result: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        previous = result.get(lowered)
        result[lowered] = value if previous is None else f"{previous},{value}"
    return result
