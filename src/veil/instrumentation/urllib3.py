"""veil instrumentation for urllib3 (1.26 and 2.x): one CLIENT span per connection-pool `urlopen()`.

What is patched: `urllib3.connectionpool.HTTPConnectionPool.urlopen` (HTTPS pools inherit it), which
`urllib3.request()`, `PoolManager.request()` and pools all reach. Retries and same-pool redirects that urllib3
performs inside one `urlopen` are one span with http.request.resend_count; a redirect that `PoolManager`
follows to another URL is a new span whose resend count continues from the `Retry` history. With
`preload_content=False` the span ends when the body has been read to its end, drained or closed.

What is recorded: the stable HTTP client conventions (span `{method}`, url.full redacted like every other veil
client, server.address/port, http.response.status_code, network.protocol.version, error.type), 4xx and 5xx
as errors, http.client.request.duration and body sizes. Propagation headers go into a copy of the caller's
header mapping. Nothing is traced inside `suppress_instrumentation()` / `suppress_http_instrumentation()`
(exporters, or requests' own span around its urllib3 call).
"""

from __future__ import annotations

from typing import Any

import urllib3
import urllib3.connectionpool

from veil._guard import log_once
from veil.instrumentation._http import (
    BodyCompletion,
    ClientInstrumentor,
    ClientRequest,
    ClientTelemetry,
    client_http_enabled,
    content_length,
)

__all__ = ["URLLib3Instrumentor"]

_instruments = ("urllib3 >= 1.26, < 3",)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# urlopen(self, method, url, body=None, headers=None, retries=None, redirect=True, ...)
_HEADERS_INDEX = 3
_RETRIES_INDEX = 4


def _full_url(pool: Any, url: str) -> str:
    if "://" in url:
        return url  # absolute form (proxies)
    scheme = pool.scheme or "http"
    host = pool.host or ""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = pool.port
    authority = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{authority}{url}"


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _start(
    telemetry: ClientTelemetry, pool: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ClientRequest | None, tuple[Any, ...], dict[str, Any]]:
    """The call's span and the arguments to send with (headers copied, propagation injected)."""
    try:
        method = args[0] if args else kwargs.get("method", "GET")
        url = args[1] if len(args) > 1 else kwargs.get("url", "/")
        headers = _argument(args, kwargs, _HEADERS_INDEX, "headers")
        if headers is None:
            headers = pool.headers
        body = _argument(args, kwargs, 2, "body")
        if isinstance(body, (bytes, str)):
            body_size: int | None = len(body)
        else:
            body_size = content_length(headers.get("Content-Length") or headers.get("content-length"))
        scheme = pool.scheme or "http"
        call = telemetry.start(
            str(method),
            _full_url(pool, str(url)),
            native=pool,
            headers=headers.items,
            scheme=scheme,
            server_address=pool.host or None,
            server_port=pool.port or _DEFAULT_PORTS.get(scheme),
            request_body_size=body_size,
        )
        if call is None:
            return None, args, kwargs
        copied = headers.copy() if hasattr(headers, "copy") else dict(headers)
        call.inject(copied)
        if len(args) > _HEADERS_INDEX:
            args = (*args[:_HEADERS_INDEX], copied, *args[_HEADERS_INDEX + 1 :])
        else:
            kwargs = {**kwargs, "headers": copied}
        return call, args, kwargs
    except Exception:
        log_once("urllib3.start", "veil: cannot trace a urllib3 request (it is sent untraced)", exc_info=True)
        return None, args, kwargs


def _on_response(call: ClientRequest, response: Any) -> None:
    try:
        retries = getattr(response, "retries", None)
        history = getattr(retries, "history", None) or ()
        call.set_mapping_response(
            int(response.status), response.headers, getattr(response, "version", None), len(history), response
        )
        BodyCompletion.attach(call, getattr(response, "_original_response", None))
    except Exception:
        log_once("urllib3.response", "veil: cannot record a urllib3 response", exc_info=True)
        call.finish()


def _urlopen(telemetry: ClientTelemetry, wrapped: Any, pool: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not client_http_enabled():  # inside requests' own span, or an exporter: nothing to read or copy
        return wrapped(*args, **kwargs)
    call, args, kwargs = _start(telemetry, pool, args, kwargs)
    if call is None:
        return wrapped(*args, **kwargs)
    response = call.run(wrapped, args, kwargs)
    _on_response(call, response)
    return response


class URLLib3Instrumentor(ClientInstrumentor):
    """Traces urllib3. Options (read once): tracer_provider, meter_provider, request_hook(span, request_info),
    response_hook(span, request_info, response_info), excluded_urls, capture_request_headers,
    capture_response_headers, sanitize_fields, sensitive_query_parameters.
    """

    _library = "urllib3"
    _module = "veil.instrumentation.urllib3"
    _dependencies = _instruments
    _patches = ((urllib3.connectionpool.HTTPConnectionPool, "urlopen", _urlopen, False),)
