"""The server core shared by WSGI, Django, ASGI and the frameworks: starting the SERVER span of a request.

`ServerTelemetry` is built once per instrumentation (tracer, metric instruments, options) and holds nothing
about any request, only bounded caches of values derived from low-cardinality request shapes. `start()` takes
what a library knows about a request; `start_environ()` reads it from a WSGI environ or Django META.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.propagators.textmap import Getter
from opentelemetry.semconv._incubating.attributes.http_attributes import HTTP_TARGET, HTTP_USER_AGENT
from opentelemetry.semconv._incubating.attributes.net_attributes import NET_PEER_IP
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PEER_ADDRESS
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_QUERY
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL
from opentelemetry.trace import SpanKind
from opentelemetry.trace import TracerProvider as APITracerProvider

from veil._cache import remember
from veil._version import __version__
from veil.instrumentation._http.config import HTTPConfig, config_from_options
from veil.instrumentation._http.headers import ENVIRON_GETTER, environ_headers
from veil.instrumentation._http.hooks import RequestInfo, call_request_hook, joined_headers
from veil.instrumentation._http.metrics import ActiveRequests, request_metrics
from veil.instrumentation._http.semconv import (
    SCHEMA_URL,
    MetricAttributes,
    ServerShape,
    server_shape,
    span_name,
)
from veil.instrumentation._http.server_request import ServerRequest
from veil.instrumentation._http.wire import DEFAULT_PORTS, content_length, int_or_none, protocol_version_of
from veil.propagation import api_module
from veil.security import request as security_request

propagate = api_module()

_SERVER: Final = SpanKind.SERVER
_SHAPE_CACHE_LIMIT: Final = 256


class ServerTelemetry:
    """The tracer, the server metric instruments and the options of one server instrumentation.

    Built once (instrument(), instrument_app(), middleware construction); holds nothing about any request,
    only bounded caches of values derived from low-cardinality request shapes (method, scheme, Host,
    protocol; route, status) so the per-request path copies prepared attribute sets instead of rebuilding
    them.
    """

    __slots__ = ("_shapes", "active", "config", "metric_attributes", "metrics", "tracer")

    def __init__(
        self,
        instrumenting_module: str,
        config: HTTPConfig,
        tracer_provider: APITracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.config = config
        self.tracer = trace.get_tracer(instrumenting_module, __version__, tracer_provider, schema_url=SCHEMA_URL)
        meter = metrics.get_meter(instrumenting_module, __version__, meter_provider, schema_url=SCHEMA_URL)
        self.metrics = request_metrics(meter, "server", config.dup)
        self.active = ActiveRequests(meter)
        # (method, scheme, Host, protocol) -> (normalized method, span attributes, active key, span name)
        self._shapes: dict[tuple[str, str, str | None, str | None], ServerShape] = {}
        # (method, original method, scheme, status, route, protocol, error.type) -> metric attribute sets
        self.metric_attributes: dict[tuple[Any, ...], MetricAttributes] = {}

    # -- starting

    def start(  # noqa: PLR0917 - positional for start_environ: a keyword call costs ~0.13 µs more per request
        self,
        method: str,
        scheme: str,
        path: str,
        query: str,
        host: str | None,
        client_address: str | None,
        peer_address: str | None,
        protocol_version: str | None,
        user_agent: str | None,
        request_body_size: int | None,
        carrier: Any,
        getter: Getter[Any],
        headers: Callable[[], Iterable[tuple[str, str]]] | None,
        native: object,
        route: str | None = None,
    ) -> ServerRequest | None:
        """Start the SERVER span of one request, or return None when its URL is excluded.

        `host` is the Host header (or `server_name:port`); `headers()` is only called when headers are
        captured or a hook needs them (None: `carrier` is a WSGI environ and they are read from it). The span
        is created but not made current: call `attach()`. Libraries pass keywords (`start_scope`);
        `start_environ` passes them in order.
        """
        config = self.config
        if config.excluded is not None:
            target = f"{scheme}://{host or ''}{path}"
            if query:
                target = f"{target}?{query}"
            if config.excluded.search(target) is not None:
                return None

        shape_key = (method, scheme, host, protocol_version)
        shape = self._shapes.get(shape_key)
        if shape is None:
            # the Host header is the client's: never let the cache grow without bound
            shape = remember(
                self._shapes,
                shape_key,
                server_shape(method, scheme, host, protocol_version, config.dup),
                _SHAPE_CACHE_LIMIT,
            )
        normalized, base, active_key, name = shape
        attributes = base.copy()
        attributes[URL_PATH] = path
        redacted_query = config.redact_query(query) if query else ""
        if redacted_query:
            attributes[URL_QUERY] = redacted_query
        if client_address:
            attributes[CLIENT_ADDRESS] = client_address
        if peer_address:
            attributes[NETWORK_PEER_ADDRESS] = peer_address
        if user_agent:
            attributes[USER_AGENT_ORIGINAL] = user_agent
        if route:
            attributes[HTTP_ROUTE] = route
            name = span_name(normalized, route)
        if config.dup:
            attributes[HTTP_TARGET] = f"{path}?{redacted_query}" if redacted_query else path
            if client_address:
                attributes[NET_PEER_IP] = client_address
            if user_agent:
                attributes[HTTP_USER_AGENT] = user_agent

        parent = propagate.extract(carrier, getter=getter)
        span = self.tracer.start_span(name, parent, _SERVER, attributes)
        request = ServerRequest(
            self, span, parent, normalized, method, scheme, protocol_version, route, active_key=active_key
        )
        request.request_body_size = request_body_size
        self.active.add(active_key, 1)
        if security_request.scopes_wanted():  # the security layer's view of this request (veil.security)
            security_request.begin(
                request,
                f"{path}?{query}" if query else path,
                peer_address or client_address,
                user_agent,
                headers if headers is not None else partial(environ_headers, carrier),
            )

        if (
            config.request_headers is not None or config.request_hook is not None or config.response_hook is not None
        ) and span.is_recording():
            capture = config.request_headers
            header_list = list(headers()) if headers is not None else environ_headers(carrier)
            if capture is not None:
                captured = capture.attributes(header_list)
                if captured:
                    span.set_attributes(captured)
            if config.request_hook is not None or config.response_hook is not None:
                url = f"{scheme}://{host or ''}{path}"
                if redacted_query:
                    url = f"{url}?{redacted_query}"
                request.info = RequestInfo(method, url, joined_headers(header_list), native)
                if config.request_hook is not None:
                    call_request_hook(config.request_hook, span, request.info)
        return request

    def start_environ(
        self,
        environ: Mapping[str, Any],
        *,
        native: object = None,
        scheme: str | None = None,
        protocol_version: str | None = None,
        route: str | None = None,
    ) -> ServerRequest | None:
        """Start the SERVER span of a WSGI request (also used for Django's META under WSGI and ASGI).

        `scheme` and `protocol_version` override what the environ says (Django under ASGI knows them from
        the scope, its META does not carry them).
        """
        get = environ.get
        scheme = scheme or get("wsgi.url_scheme") or "http"
        host = get("HTTP_HOST")
        if not host:
            name = get("SERVER_NAME")
            if name:
                port = get("SERVER_PORT")
                host = f"{name}:{port}" if port and DEFAULT_PORTS.get(scheme) != int_or_none(port) else name
        remote = get("REMOTE_ADDR")
        forwarded = get("HTTP_X_FORWARDED_FOR")
        if forwarded:
            client = forwarded.split(",", 1)[0].strip() or remote
            peer = remote
        else:
            client = remote
            peer = None
        version = protocol_version
        if version is None:
            protocol = get("SERVER_PROTOCOL")
            if protocol:
                version = protocol_version_of(protocol)
        length = get("CONTENT_LENGTH")
        return self.start(
            get("REQUEST_METHOD") or "GET",
            scheme,
            (get("SCRIPT_NAME") or "") + (get("PATH_INFO") or "") or "/",
            get("QUERY_STRING") or "",
            host,
            client,
            peer,
            version,
            get("HTTP_USER_AGENT"),
            content_length(length) if length else None,
            environ,
            ENVIRON_GETTER,
            None,  # headers: read from the environ itself, only when captured or a hook needs them
            environ if native is None else native,
            route,
        )


def server_telemetry(library: str, instrumenting_module: str, options: Mapping[str, Any]) -> ServerTelemetry:
    """The telemetry of a server instrumentation from `instrument(**options)` / middleware keywords.

    Options: tracer_provider, meter_provider and the `server_config` keywords (absent or None = settings).
    Read once, never per request.
    """
    return ServerTelemetry(
        instrumenting_module,
        config_from_options("server", library, options),
        options.get("tracer_provider"),
        options.get("meter_provider"),
    )
