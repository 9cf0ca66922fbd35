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

from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import requests

from veil._guard import log_once
from veil.instrumentation._http import (
    BodyCompletion,
    ClientInstrumentor,
    ClientRequest,
    ClientTelemetry,
    content_length,
)

__all__ = ["RequestsInstrumentor"]

_instruments = ("requests >= 2.0, < 3",)


def _text_items(headers: Mapping[str, str | bytes]) -> Iterator[tuple[str, str]]:
    for name, value in headers.items():
        yield name, value if isinstance(value, str) else value.decode("latin-1")


def _start(telemetry: ClientTelemetry, request: requests.PreparedRequest) -> ClientRequest | None:
    try:
        headers = request.headers
        body = request.body
        body_size = len(body) if isinstance(body, (bytes, str)) else content_length(headers.get("Content-Length"))
        call = telemetry.start(
            request.method or "GET",
            request.url or "",
            native=request,
            headers=partial(_text_items, headers),
            request_body_size=body_size,
        )
        if call is not None:
            call.inject(headers)
        return call
    except Exception:
        log_once("requests.start", "veil: cannot trace a requests call (it is sent untraced)", exc_info=True)
        return None


def _on_response(call: ClientRequest, response: requests.Response) -> None:
    try:
        raw = response.raw
        resends = len(response.history)
        retry_history = getattr(getattr(raw, "retries", None), "history", None)
        if retry_history:
            resends += len(retry_history)  # urllib3's own retries of the last request, inside this send
        call.set_mapping_response(
            response.status_code, response.headers, getattr(raw, "version", None), resends, response
        )
        if getattr(response, "_content_consumed", False):  # set by requests once the body is read
            call.finish()
        else:
            BodyCompletion.attach(call, getattr(raw, "_original_response", None))
    except Exception:
        log_once("requests.response", "veil: cannot record a requests response", exc_info=True)
        call.finish()


def _send(telemetry: ClientTelemetry, wrapped: Any, session: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request = args[0] if args else kwargs.get("request")
    call = _start(telemetry, request) if isinstance(request, requests.PreparedRequest) else None
    if call is None:
        return wrapped(*args, **kwargs)
    response = call.run(wrapped, args, kwargs)
    if isinstance(response, requests.Response):
        _on_response(call, response)
    else:
        call.finish()
    return response


class RequestsInstrumentor(ClientInstrumentor):
    """Traces requests. Options (read once): tracer_provider, meter_provider, request_hook(span, request_info),
    response_hook(span, request_info, response_info), excluded_urls, capture_request_headers,
    capture_response_headers, sanitize_fields, sensitive_query_parameters.
    """

    _library = "requests"
    _module = "veil.instrumentation.requests"
    _dependencies = _instruments
    _patches = ((requests.Session, "send", _send, False),)
