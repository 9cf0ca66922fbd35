"""The options of one HTTP instrumentation, resolved once at instrument time (never per request).

`server_config` / `client_config` read `veil.settings.current()` and `library_excluded_urls(library)`;
keyword arguments (None = not given) override. `checked_options` rejects an unknown `instrument()` option
with a ConfigurationError naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict

from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_HEADER_TEMPLATE,
    HTTP_RESPONSE_HEADER_TEMPLATE,
)

from veil.errors import ConfigurationError
from veil.instrumentation._http.headers import HeaderCapture, compile_alternatives
from veil.instrumentation._http.hooks import RequestHook, ResponseHook

if TYPE_CHECKING:
    from typing_extensions import Unpack

Side = Literal["server", "client"]

SERVER_OPTION_NAMES: Final = (
    "excluded_urls",
    "request_hook",
    "response_hook",
    "capture_request_headers",
    "capture_response_headers",
    "sanitize_fields",
    "tracer_provider",
    "meter_provider",
)
"""The options every server instrumentation accepts (some add their own)."""


class HTTPOptions(TypedDict, total=False):
    """The keyword arguments of `server_config` / `client_config` (None = from the settings)."""

    excluded_urls: str | Sequence[str] | None
    request_hook: RequestHook | None
    response_hook: ResponseHook | None
    capture_request_headers: Sequence[str] | None
    capture_response_headers: Sequence[str] | None
    sanitize_fields: Sequence[str] | None
    sensitive_query_parameters: Sequence[str] | None


def checked_options(owner: str, options: dict[str, Any], accepted: Iterable[str]) -> dict[str, Any]:
    """`options` checked by name: an unknown one raises ConfigurationError naming it and the accepted ones."""
    accepted = tuple(accepted)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigurationError(f"{owner}({unknown[0]}=...)", options[unknown[0]], accepted, reason="unknown option")
    return options


@dataclass(frozen=True)
class HTTPConfig:
    """HTTP options of one instrumentation, resolved once at instrument time."""

    dup: bool
    """Also emit the pre-stable attribute and metric names (OTEL_SEMCONV_STABILITY_OPT_IN=http/dup)."""
    excluded: re.Pattern[str] | None
    """Searched in the full URL; a match means the request is not traced at all."""
    request_headers: HeaderCapture | None
    response_headers: HeaderCapture | None
    sensitive_query_parameters: frozenset[str] | None
    """Query parameter names whose values are redacted; None when redaction is disabled."""
    request_hook: RequestHook | None
    response_hook: ResponseHook | None

    def is_excluded(self, url: str) -> bool:
        return self.excluded is not None and self.excluded.search(url) is not None

    def redact_query(self, query: str) -> str:
        if self.sensitive_query_parameters is None or not query:
            return query
        from veil.redaction.url import redact_query

        return redact_query(query, self.sensitive_query_parameters)

    def redact_url(self, url: str) -> str:
        if self.sensitive_query_parameters is None:
            return url
        from veil.redaction.url import redact_url

        return redact_url(url, self.sensitive_query_parameters)


def _header_capture(
    patterns: Sequence[str], sanitize: Sequence[str], prefix: str, variable: str
) -> HeaderCapture | None:
    return HeaderCapture(patterns, sanitize, prefix, variable) if patterns else None


def config_from_options(side: Side, library: str, options: Mapping[str, Any]) -> HTTPConfig:
    """The HTTPConfig of `instrument(**options)`-style options: the HTTPOptions names, absent or None = settings.

    Other entries (providers, library-specific options) are ignored.
    """
    from veil import settings as veil_settings
    from veil.redaction.url import DEFAULT_SENSITIVE_QUERY_PARAMETERS

    current = veil_settings.current()
    excluded_urls: str | Sequence[str] | None = options.get("excluded_urls")
    if excluded_urls is not None:
        excluded_variable = f"{library} excluded_urls (keyword argument)"
        if isinstance(excluded_urls, str):
            excluded_urls = [item.strip() for item in excluded_urls.split(",") if item.strip()]
        excluded: Sequence[str] = excluded_urls
    else:
        per_library = veil_settings.library_excluded_urls(library)
        if per_library is not None:
            excluded_variable = f"OTEL_PYTHON_{library.upper().replace('-', '_')}_EXCLUDED_URLS"
            excluded = per_library
        else:
            excluded_variable = "OTEL_PYTHON_EXCLUDED_URLS"
            excluded = current.excluded_urls

    upper = side.upper()
    capture_request_headers = options.get("capture_request_headers")
    if capture_request_headers is None:
        capture_request_headers = getattr(current, f"http_capture_headers_{side}_request")
    capture_response_headers = options.get("capture_response_headers")
    if capture_response_headers is None:
        capture_response_headers = getattr(current, f"http_capture_headers_{side}_response")
    sanitize = list(current.http_capture_headers_sanitize_fields)
    sanitize_fields = options.get("sanitize_fields")
    if sanitize_fields is not None:
        sanitize.extend(sanitize_fields)

    sensitive: frozenset[str] | None = None
    if current.redaction_enabled:
        extra = current.sensitive_query_parameters
        sensitive_query_parameters = options.get("sensitive_query_parameters")
        if sensitive_query_parameters is not None:
            extra = (*extra, *sensitive_query_parameters)
        sensitive = DEFAULT_SENSITIVE_QUERY_PARAMETERS | frozenset(extra)

    variable = f"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_{upper}"
    return HTTPConfig(
        dup=current.semconv_http_mode == "dup",
        excluded=compile_alternatives(excluded_variable, excluded),
        request_headers=_header_capture(
            capture_request_headers, sanitize, HTTP_REQUEST_HEADER_TEMPLATE, f"{variable}_REQUEST"
        ),
        response_headers=_header_capture(
            capture_response_headers, sanitize, HTTP_RESPONSE_HEADER_TEMPLATE, f"{variable}_RESPONSE"
        ),
        sensitive_query_parameters=sensitive,
        request_hook=options.get("request_hook"),
        response_hook=options.get("response_hook"),
    )


def server_config(library: str, **options: Unpack[HTTPOptions]) -> HTTPConfig:
    """Options of a server instrumentation from veil's settings; keyword arguments (when not None) win.

    `excluded_urls` replaces OTEL_PYTHON_<LIBRARY>_EXCLUDED_URLS / OTEL_PYTHON_EXCLUDED_URLS; header lists
    replace OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_*; `sanitize_fields` and
    `sensitive_query_parameters` add to the configured lists. Raises ConfigurationError for an invalid
    regular expression.
    """
    return config_from_options("server", library, options)


def client_config(library: str, **options: Unpack[HTTPOptions]) -> HTTPConfig:
    """Options of a client instrumentation; as `server_config` with the CLIENT header variables."""
    return config_from_options("client", library, options)
