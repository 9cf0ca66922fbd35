"""Reading an ASGI scope: its headers, the propagation getter over them, and `start_scope`.

An ASGI scope carries its request headers as a list of (lowercased name, value) byte pairs. One pass over
that list builds a small bytes-keyed map (repeated headers joined with `,`) which serves the attributes,
the Content-Length and, through SCOPE_GETTER, the propagators; header capture and hooks decode the raw list
only when they are configured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from opentelemetry.propagators.textmap import Getter

from veil.instrumentation._http.server import ServerTelemetry
from veil.instrumentation._http.server_request import ServerRequest
from veil.instrumentation._http.wire import DEFAULT_PORTS, content_length


def scope_header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The request headers of an ASGI scope by (already lowercased) name; repeated headers joined with `,`."""
    headers: dict[bytes, bytes] = {}
    for name, value in raw:
        previous = headers.get(name)
        headers[name] = value if previous is None else previous + b"," + value
    return headers


def decode_scope_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The raw header pairs of an ASGI scope or response-start message as latin-1 strings."""
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]


class _ScopeHeadersGetter(Getter[Mapping[bytes, bytes]]):
    """Reads propagation headers out of `scope_header_map(scope["headers"])`."""

    def get(self, carrier: Mapping[bytes, bytes], key: str) -> list[str] | None:
        value = carrier.get(key.lower().encode("latin-1"))
        if value is None:
            return None
        return [value.decode("latin-1")]

    def keys(self, carrier: Mapping[bytes, bytes]) -> list[str]:
        return [name.decode("latin-1") for name in carrier]


SCOPE_GETTER: Final = _ScopeHeadersGetter()


def start_scope(
    telemetry: ServerTelemetry, scope: Mapping[str, Any], *, method: str | None = None
) -> ServerRequest | None:
    """Start the SERVER span of an ASGI `http` request (or `websocket` handshake, with `method="GET"`).

    None when the URL is excluded. Reads only the scope: `scheme`, `path`, `query_string`, `http_version`,
    `client`, `server` and the headers (Host, User-Agent, X-Forwarded-For, Content-Length, propagation).
    """
    raw: Iterable[tuple[bytes, bytes]] = scope.get("headers") or ()
    headers = scope_header_map(raw)
    scheme = scope.get("scheme") or ("ws" if scope.get("type") == "websocket" else "http")
    host_bytes = headers.get(b"host")
    host: str | None
    if host_bytes:
        host = host_bytes.decode("latin-1")
    else:
        server = scope.get("server")
        host = None
        if server and server[0]:
            port = server[1] if len(server) > 1 else None
            host = f"{server[0]}:{port}" if port is not None and DEFAULT_PORTS.get(scheme) != port else server[0]
    client = scope.get("client")
    remote: str | None = client[0] if client else None
    forwarded = headers.get(b"x-forwarded-for")
    peer: str | None = None
    if forwarded:
        client_address = forwarded.split(b",", 1)[0].strip().decode("latin-1") or remote
        peer = remote
    else:
        client_address = remote
    user_agent = headers.get(b"user-agent")
    query: bytes = scope.get("query_string") or b""
    return telemetry.start(
        method=method or scope.get("method") or "GET",
        scheme=scheme,
        path=scope.get("path") or "/",
        query=query.decode("latin-1") if query else "",
        host=host,
        client_address=client_address,
        peer_address=peer,
        protocol_version=scope.get("http_version"),
        user_agent=user_agent.decode("latin-1") if user_agent else None,
        request_body_size=content_length(headers.get(b"content-length")),
        carrier=headers,
        getter=SCOPE_GETTER,
        headers=lambda: decode_scope_headers(raw),
        native=scope,
    )
