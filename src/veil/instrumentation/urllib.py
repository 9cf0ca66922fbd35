"""veil instrumentation for the standard library's urllib.request: one CLIENT span per `urlopen()`.

What is patched: `urllib.request.OpenerDirector.open`, which `urllib.request.urlopen()` and every opener from
`build_opener()` use. Only http and https URLs are traced (file:, data:, ftp: are left alone). Redirects
followed by `HTTPRedirectHandler` re-enter `open()`: they are counted in http.request.resend_count on the one
span and carry its propagation headers. An `HTTPError` (4xx/5xx raised by urllib) is recorded as the response
it is: status code, error.type = the status code, ERROR status, and is re-raised unchanged. The span ends when
the response body has been read to its end or the response is closed.

Propagation headers are added to the request as "unredirected" headers (where urllib puts Host and
User-Agent) for the duration of the call and removed afterwards, so a `Request` object the caller reuses never
keeps them. Nothing is traced inside `suppress_instrumentation()` / `suppress_http_instrumentation()`.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any, Final

from opentelemetry import context as otel_context

from veil._guard import log_once
from veil.instrumentation._http import BodyCompletion, ClientInstrumentor, ClientRequest, ClientTelemetry

__all__ = ["URLLibInstrumentor"]

_instruments: tuple[str, ...] = ()  # the standard library: always available
_CALL_KEY: Final = otel_context.create_key("veil-urllib-call")
_TRACED_SCHEMES: Final = frozenset({"http", "https"})


def _request_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[urllib.request.Request, tuple[Any, ...]]:
    """The Request to send (built the way `open` would from a URL string) and the arguments carrying it."""
    fullurl = args[0] if args else kwargs.pop("fullurl")
    rest = args[1:] if args else ()
    if isinstance(fullurl, str):
        data = rest[0] if rest else kwargs.pop("data", None)
        request = urllib.request.Request(fullurl, data)
        rest = rest[1:] if rest else ()
        return request, (request, None, *rest)
    return fullurl, (fullurl, *rest)


def _inject(call: ClientRequest, request: urllib.request.Request) -> dict[str, str]:
    """Add propagation headers as unredirected headers; returns what was added, to take it back later."""
    carrier: dict[str, str] = {}
    call.inject(carrier)
    added: dict[str, str] = {}
    for name, value in carrier.items():
        key = name.capitalize()
        request.unredirected_hdrs[key] = value
        added[key] = value
    return added


def _remove(request: urllib.request.Request, added: dict[str, str]) -> None:
    for key, value in added.items():
        if request.unredirected_hdrs.get(key) == value:
            del request.unredirected_hdrs[key]


def _header_items(request: urllib.request.Request) -> list[tuple[str, str]]:
    return [*request.header_items()]


def _nested(args: tuple[Any, ...], kwargs: dict[str, Any], wrapped: Any) -> Any:
    """A redirect hop inside a traced `open()`: count it and propagate the same span."""
    call = otel_context.get_value(_CALL_KEY)
    if not isinstance(call, ClientRequest) or call.finished:
        return wrapped(*args, **kwargs)
    try:
        request, args = _request_of(args, kwargs)
        call.resend_count += 1
        added = _inject(call, request)
    except Exception:
        log_once("urllib.redirect", "veil: cannot follow a urllib redirect", exc_info=True)
        return wrapped(*args, **kwargs)
    try:
        return wrapped(*args, **kwargs)
    finally:
        _remove(request, added)


def _open(telemetry: ClientTelemetry, wrapped: Any, opener: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if otel_context.get_value(_CALL_KEY) is not None:
        return _nested(args, kwargs, wrapped)
    try:
        fullurl = args[0] if args else kwargs.get("fullurl")
        url = fullurl if isinstance(fullurl, str) else getattr(fullurl, "full_url", "")
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme not in _TRACED_SCHEMES:
            return wrapped(*args, **kwargs)
        request, args = _request_of(args, kwargs)
        data = request.data
        call = telemetry.start(
            request.get_method(),
            request.full_url,
            native=request,
            headers=lambda: _header_items(request),
            scheme=scheme,
            request_body_size=len(data) if isinstance(data, (bytes, bytearray)) else None,
        )
        added = _inject(call, request) if call is not None else {}
    except Exception:
        log_once("urllib.start", "veil: cannot trace a urllib request (it is sent untraced)", exc_info=True)
        call = None
    if call is None:
        return wrapped(*args, **kwargs)
    token = call.activate(_CALL_KEY, call)
    try:
        response = wrapped(*args, **kwargs)
    except urllib.error.HTTPError as error:
        _record(call, error, error.code, error.headers)
        call.finish()
        raise
    except BaseException as error:
        call.finish(error)
        raise
    finally:
        call.deactivate(token)
        _remove(request, added)
    try:
        _record(call, response, response.status, response.headers)
        BodyCompletion.attach(call, response)
    except Exception:
        log_once("urllib.response", "veil: cannot record a urllib response", exc_info=True)
        call.finish()
    return response


def _record(call: ClientRequest, response: Any, status: int, headers: Any) -> None:
    try:
        call.set_mapping_response(int(status), headers, getattr(response, "version", None), call.resend_count, response)
    except Exception:
        log_once("urllib.response", "veil: cannot record a urllib response", exc_info=True)


class URLLibInstrumentor(ClientInstrumentor):
    """Traces urllib.request. Options (read once): tracer_provider, meter_provider, request_hook(span,
    request_info), response_hook(span, request_info, response_info), excluded_urls, capture_request_headers,
    capture_response_headers, sanitize_fields, sensitive_query_parameters.
    """

    _library = "urllib"
    _module = "veil.instrumentation.urllib"
    _dependencies = _instruments
    _patches = ((urllib.request.OpenerDirector, "open", _open, False),)
