"""Cheap parsers of HTTP wire values: host and port, an absolute URL's authority, protocol version, lengths.

No semantic conventions here, only what the per-request paths need to turn the strings and numbers a
library hands over into the values the attributes record.
"""

from __future__ import annotations

from typing import Final

DEFAULT_PORTS: Final[dict[str, int]] = {"http": 80, "https": 443, "ws": 80, "wss": 443}

_PROTOCOL_VERSIONS: Final[dict[str, str]] = {
    "HTTP/1.1": "1.1",
    "HTTP/1.0": "1.0",
    "HTTP/2": "2",
    "HTTP/2.0": "2",
    "HTTP/3": "3",
}
_NUMERIC_VERSIONS: Final[dict[int, str]] = {9: "0.9", 10: "1.0", 11: "1.1", 20: "2", 30: "3"}


def split_host(host: str, scheme: str) -> tuple[str, int | None]:
    """`example.com:8080` -> ("example.com", 8080); `[::1]` -> ("::1", default port of the scheme)."""
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            address = host[1:end]
            rest = host[end + 1 :]
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            return host, DEFAULT_PORTS.get(scheme)
    else:
        address, _, port_text = host.partition(":")
    if port_text:
        if port_text.isdigit():
            return address, int(port_text)
        return address, None
    return address, DEFAULT_PORTS.get(scheme)


def split_url(url: str) -> tuple[str, str | None, int | None]:
    """(scheme, host, port) of an absolute URL, cheaply: `https://u:p@[::1]:8443/x` -> ("https", "::1", 8443).

    The port is the scheme's default when the URL has none; host is None when the URL has no authority.
    """
    separator = url.find("://")
    if separator <= 0:
        return "", None, None
    scheme = url[:separator].lower()
    start = separator + 3
    end = len(url)
    for delimiter in "/?#":
        position = url.find(delimiter, start, end)
        if position >= 0:
            end = position
    at = url.rfind("@", start, end)
    if at >= 0:
        start = at + 1
    authority = url[start:end]
    if not authority:
        return scheme, None, None
    host, port = split_host(authority, scheme)
    return scheme, host.lower(), port


def protocol_version_of(http_version: str | int | None) -> str | None:
    """network.protocol.version from `HTTP/1.1`, `HTTP/2`, 11, 20 (the shapes servers and clients use)."""
    if http_version is None:
        return None
    if isinstance(http_version, int):
        return _NUMERIC_VERSIONS.get(http_version)
    version = _PROTOCOL_VERSIONS.get(http_version)
    if version is None and http_version.startswith("HTTP/"):
        version = http_version[5:]
    return version


def content_length(value: object) -> int | None:
    """A Content-Length header value as a non-negative int, or None."""
    if value is None or value == "":
        return None
    try:
        length = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return length if length >= 0 else None


def int_or_none(text: object) -> int | None:
    """`int(text)`, or None when it is not a number."""
    try:
        return int(text)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None
