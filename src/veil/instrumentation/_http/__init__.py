"""Everything HTTP that veil's server and client instrumentations share.

One package so that every library records the same attributes, names, statuses, metrics and redaction; the
per-library modules only translate their request/response objects into the calls re-exported here.

| module | owns |
|---|---|
| `wire` | parsers of wire values: host and port, URL authority, protocol version, Content-Length |
| `semconv` | schema URL, method normalization, span names, error statuses, `error.type`, cached attribute sets |
| `hooks` | `RequestInfo` / `ResponseInfo`, the hook signatures, calling hooks without ever raising |
| `headers` | `HeaderCapture` (captured headers, values redacted), pattern lists, WSGI-environ headers |
| `config` | `HTTPConfig`, `server_config` / `client_config`, option-name checks |
| `metrics` | duration and body-size histograms, active server requests |
| `server` / `server_request` | `ServerTelemetry` (once per instrumentation) and `ServerRequest` (one request) |
| `asgi_scope` | reading an ASGI scope; `start_scope` |
| `client` / `client_request` | `ClientTelemetry` (once per instrumentation) and `ClientRequest` (one request) |
| `instrumentors` | the bases of the client instrumentors and of the WSGI/ASGI ones |

Configuration is built ONCE at instrument time, never per request; see each module for its part.
"""

from veil.instrumentation._http.asgi_scope import SCOPE_GETTER, decode_scope_headers, scope_header_map, start_scope
from veil.instrumentation._http.client import ClientTelemetry, client_http_enabled, client_telemetry
from veil.instrumentation._http.client_request import BodyCompletion, ClientRequest, FinishAfter, scrub_error_text
from veil.instrumentation._http.config import (
    SERVER_OPTION_NAMES,
    HTTPConfig,
    HTTPOptions,
    checked_options,
    client_config,
    config_from_options,
    server_config,
)
from veil.instrumentation._http.headers import ENVIRON_GETTER, HeaderCapture, environ_headers
from veil.instrumentation._http.hooks import (
    AsyncRequestHook,
    AsyncResponseHook,
    RequestHook,
    RequestInfo,
    ResponseHook,
    ResponseInfo,
    call_request_hook,
    call_response_hook,
)
from veil.instrumentation._http.instrumentors import ClientInstrumentor, MiddlewareInstrumentor
from veil.instrumentation._http.metrics import DURATION_BUCKETS
from veil.instrumentation._http.semconv import (
    SCHEMA_URL,
    client_status_is_error,
    error_type_of,
    normalize_method,
    server_status_is_error,
    span_name,
)
from veil.instrumentation._http.server import ServerTelemetry, server_telemetry
from veil.instrumentation._http.server_request import (
    ServerRequest,
    current_server_request,
    fail_guarded,
    finish_guarded,
)
from veil.instrumentation._http.wire import content_length, protocol_version_of, split_host, split_url

__all__ = [
    "DURATION_BUCKETS",
    "ENVIRON_GETTER",
    "SCHEMA_URL",
    "SCOPE_GETTER",
    "SERVER_OPTION_NAMES",
    "AsyncRequestHook",
    "AsyncResponseHook",
    "BodyCompletion",
    "ClientInstrumentor",
    "ClientRequest",
    "ClientTelemetry",
    "FinishAfter",
    "HTTPConfig",
    "HTTPOptions",
    "HeaderCapture",
    "MiddlewareInstrumentor",
    "RequestHook",
    "RequestInfo",
    "ResponseHook",
    "ResponseInfo",
    "ServerRequest",
    "ServerTelemetry",
    "call_request_hook",
    "call_response_hook",
    "checked_options",
    "client_config",
    "client_http_enabled",
    "client_status_is_error",
    "client_telemetry",
    "config_from_options",
    "content_length",
    "current_server_request",
    "decode_scope_headers",
    "environ_headers",
    "error_type_of",
    "fail_guarded",
    "finish_guarded",
    "normalize_method",
    "protocol_version_of",
    "scope_header_map",
    "scrub_error_text",
    "server_config",
    "server_status_is_error",
    "server_telemetry",
    "span_name",
    "split_host",
    "split_url",
    "start_scope",
]
