"""veil instrumentation for requests (2.x): one CLIENT span per `Session.send()`, redirects and retries included.

What is patched: `requests.Session.send`, which every `requests.get(...)` / `session.request(...)` goes
through. The span covers the whole logical request: redirects followed by requests (which re-enter
`Session.send`) and retries made by urllib3 underneath are counted in http.request.resend_count rather than
traced twice, and the urllib3 instrumentation stays quiet inside it (one span, not two). With `stream=True`
the span ends when the body has been read to its end or the response is closed.

What is recorded: the stable HTTP client conventions (span `{method}`, http.request.method, url.full redacted,
server.address/port, http.response.status_code, network.protocol.version, error.type), 4xx and 5xx as
errors, http.client.request.duration and body sizes. Propagation headers go into the `PreparedRequest`
(requests' own copy of the caller's headers). Nothing is traced inside `suppress_instrumentation()` /
`suppress_http_instrumentation()`, so exporters built on requests (OTLP over HTTP) are never traced.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any

import requests
import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from veil._guard import log_once
from veil.instrumentation._http import (
    BodyCompletion,
    ClientRequest,
    ClientTelemetry,
    client_telemetry,
    content_length,
    protocol_version_of,
)

__all__ = ["RequestsInstrumentor"]

_instruments = ("requests >= 2.0, < 3",)
_LIBRARY = "requests"
_MODULE = "veil.instrumentation.requests"


def _text_items(headers: Mapping[str, str | bytes]) -> Iterator[tuple[str, str]]:
    for name, value in headers.items():
        yield name, value if isinstance(value, str) else value.decode("latin-1")


def _body_size(request: requests.PreparedRequest) -> int | None:
    body = request.body
    if isinstance(body, (bytes, str)):
        return len(body)
    return content_length(request.headers.get("Content-Length"))


def _start(telemetry: ClientTelemetry, request: requests.PreparedRequest) -> ClientRequest | None:
    try:
        call = telemetry.start(
            request.method or "GET",
            request.url or "",
            native=request,
            headers=lambda: _text_items(request.headers),
            request_body_size=_body_size(request),
        )
        if call is not None:
            call.inject(request.headers)
        return call
    except Exception:
        log_once("requests.start", "veil: cannot trace a requests call (it is sent untraced)", exc_info=True)
        return None


def _resends(response: requests.Response) -> int:
    count = len(response.history)
    retries = getattr(response.raw, "retries", None)
    history = getattr(retries, "history", None)
    if history:
        count += len(history)
    return count


def _on_response(call: ClientRequest, response: requests.Response) -> None:
    try:
        raw = response.raw
        call.set_response(
            response.status_code,
            headers=response.headers.items,
            body_size=content_length(response.headers.get("Content-Length")),
            protocol_version=protocol_version_of(getattr(raw, "version", None)),
            resend_count=_resends(response),
            native=response,
        )
        if response._content_consumed:
            call.finish()
        else:
            BodyCompletion.attach(call, getattr(raw, "_original_response", None))
    except Exception:
        log_once("requests.response", "veil: cannot record a requests response", exc_info=True)
        call.finish()


def _send(telemetry: ClientTelemetry, wrapped: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request = args[0] if args else kwargs.get("request")
    call = _start(telemetry, request) if isinstance(request, requests.PreparedRequest) else None
    if call is None:
        return wrapped(*args, **kwargs)
    token = call.activate()
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as error:
        call.finish(error)
        raise
    finally:
        call.deactivate(token)
    if isinstance(response, requests.Response):
        _on_response(call, response)
    else:
        call.finish()
    return response


class RequestsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces requests. Options (read once): tracer_provider, meter_provider, request_hook(span, request_info),
    response_hook(span, request_info, response_info), excluded_urls, capture_request_headers,
    capture_response_headers, sanitize_fields, sensitive_query_parameters.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        telemetry = client_telemetry(_LIBRARY, _MODULE, kwargs)

        def wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return _send(telemetry, wrapped, args, kwargs)

        wrapt.wrap_function_wrapper(requests.Session, "send", wrapper)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap(requests.Session, "send")
