"""Semantic-convention names and the attribute sets built from them, stable and (in dup mode) pre-stable.

Owns the schema URL, method normalization, span names, which statuses are errors, `error.type`, and the
request-independent attribute sets the server and client cores cache per request shape (server span base
attributes, the active-requests key, the metric attribute sets). Every name comes from
`opentelemetry.semconv`.
"""

from __future__ import annotations

from typing import Any, Final

from opentelemetry.semconv._incubating.attributes.http_attributes import (
    HTTP_FLAVOR,
    HTTP_HOST,
    HTTP_METHOD,
    HTTP_SCHEME,
    HTTP_STATUS_CODE,
)
from opentelemetry.semconv._incubating.attributes.net_attributes import (
    NET_HOST_NAME,
    NET_HOST_PORT,
    NET_PEER_NAME,
    NET_PEER_PORT,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
    HttpRequestMethodValues,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_SCHEME
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.util.types import AttributeValue

from veil.instrumentation._http.wire import split_host

SCHEMA_URL: Final = Schemas.V1_26_0.value
"""Schema of the stable HTTP conventions veil emits."""

_KNOWN_METHODS: Final[frozenset[str]] = frozenset(
    member.value for member in HttpRequestMethodValues if member is not HttpRequestMethodValues.OTHER
)
_OTHER_METHOD: Final = HttpRequestMethodValues.OTHER.value

ActiveKey = tuple[tuple[str, AttributeValue], ...]
"""The attribute set of http.server.active_requests, as a hashable tuple of pairs."""
ServerShape = tuple[str, dict[str, AttributeValue], ActiveKey, str]
"""(normalized method, base span attributes, active-requests key, span name) of one request shape."""
MetricAttributes = tuple[dict[str, AttributeValue], "dict[str, AttributeValue] | None"]
"""The stable metric attribute set and the pre-stable one (None unless dup mode) of one finished request."""

CACHE_LIMIT: Final = 512
"""Entries a per-shape cache holds before it is cleared (`veil._cache.remember`): its keys come from requests,
so it must not grow."""


# ------------------------------------------------------------------------------------------------ naming


def normalize_method(raw: str) -> str:
    """http.request.method: the method itself when known (case-sensitive, per semconv), else `_OTHER`."""
    return raw if raw in _KNOWN_METHODS else _OTHER_METHOD


def span_name(method: str, route: str | None) -> str:
    """`{method} {route}`, or `{method}` alone without a route; `HTTP` stands in for an `_OTHER` method."""
    prefix = "HTTP" if method == _OTHER_METHOD else method
    return f"{prefix} {route}" if route else prefix


def server_status_is_error(status_code: int) -> bool:
    """Server spans: only 5xx is an error (a 4xx is the client's mistake, not the server's)."""
    return status_code >= 500


def client_status_is_error(status_code: int) -> bool:
    """Client spans: 4xx and 5xx are errors."""
    return status_code >= 400


def error_type_of(exception: BaseException) -> str:
    """error.type for an exception: its fully-qualified class name (builtins without the module)."""
    cls = type(exception)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


# -------------------------------------------------------------------------------------- attribute sets


def active_key(method: str, original_method: str, scheme: str, dup: bool) -> ActiveKey:
    """The http.server.active_requests attributes of a request (normalized and original method, scheme)."""
    if dup:
        return (
            (HTTP_REQUEST_METHOD, method),
            (URL_SCHEME, scheme),
            (HTTP_METHOD, original_method),
            (HTTP_SCHEME, scheme),
        )
    return ((HTTP_REQUEST_METHOD, method), (URL_SCHEME, scheme))


def _present(*pairs: tuple[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    """The attributes among `pairs` whose value is known (neither None nor an empty string), in order."""
    return {key: value for key, value in pairs if value is not None and value != ""}


def server_shape(method: str, scheme: str, host: str | None, protocol_version: str | None, dup: bool) -> ServerShape:
    """The request-independent part of a server request's attributes, for one (method, scheme, Host, protocol)."""
    normalized = normalize_method(method)
    server_address, server_port = split_host(host, scheme) if host else (None, None)
    attributes = _present(
        (HTTP_REQUEST_METHOD, normalized),
        (URL_SCHEME, scheme),
        (HTTP_REQUEST_METHOD_ORIGINAL, method if normalized != method else None),
        (SERVER_ADDRESS, server_address),
        (SERVER_PORT, server_port),
        (NETWORK_PROTOCOL_VERSION, protocol_version),
    )
    if dup:
        attributes |= _present(
            (HTTP_METHOD, method),
            (HTTP_SCHEME, scheme),
            (HTTP_HOST, host),
            (NET_HOST_NAME, server_address),
            (NET_HOST_PORT, server_port),
            (HTTP_FLAVOR, protocol_version),
        )
    return normalized, attributes, active_key(normalized, method, scheme, dup), span_name(normalized, None)


def client_start_attributes(
    normalized: str, method: str, server_address: str | None, server_port: int | None, dup: bool
) -> dict[str, AttributeValue]:
    """The start attributes of a client request of one (method, server address, port), without url.full."""
    attributes = _present(
        (HTTP_REQUEST_METHOD, normalized),
        (HTTP_REQUEST_METHOD_ORIGINAL, method if normalized != method else None),
        (SERVER_ADDRESS, server_address),
        (SERVER_PORT, server_port),
    )
    if dup:
        attributes |= _present((HTTP_METHOD, method), (NET_PEER_NAME, server_address), (NET_PEER_PORT, server_port))
    return attributes


def server_metric_attributes(key: tuple[Any, ...], dup: bool) -> MetricAttributes:
    """Metric attribute sets of a finished server request.

    `key` is (method, original method, scheme, status, route, protocol version, error.type).
    """
    method, original_method, scheme, status, route, protocol_version, error_type = key
    attributes = _present(
        (HTTP_REQUEST_METHOD, method),
        (URL_SCHEME, scheme),
        (HTTP_RESPONSE_STATUS_CODE, status),
        (HTTP_ROUTE, route),
        (NETWORK_PROTOCOL_VERSION, protocol_version),
        (ERROR_TYPE, error_type),
    )
    old = (
        _present(
            (HTTP_METHOD, original_method),
            (HTTP_SCHEME, scheme),
            (HTTP_STATUS_CODE, status),
            (HTTP_ROUTE, route),
            (HTTP_FLAVOR, protocol_version),
        )
        if dup
        else None
    )
    return attributes, old


def client_metric_attributes(key: tuple[Any, ...], dup: bool) -> MetricAttributes:
    """Metric attribute sets of a finished client request.

    `key` is (method, original method, scheme, server address, server port, status, protocol version,
    error.type).
    """
    method, original_method, scheme, server_address, server_port, status, protocol_version, error_type = key
    attributes = _present(
        (HTTP_REQUEST_METHOD, method),
        (SERVER_ADDRESS, server_address),
        (SERVER_PORT, server_port),
        (HTTP_RESPONSE_STATUS_CODE, status),
        (NETWORK_PROTOCOL_VERSION, protocol_version),
        (ERROR_TYPE, error_type),
    )
    old = (
        _present(
            (HTTP_METHOD, original_method),
            (HTTP_SCHEME, scheme),
            (NET_PEER_NAME, server_address),
            (NET_PEER_PORT, server_port),
            (HTTP_STATUS_CODE, status),
            (HTTP_FLAVOR, protocol_version),
        )
        if dup
        else None
    )
    return attributes, old
