"""Header capture: which request/response headers become `http.*.header.<name>` attributes, values redacted.

Also the pattern compiler shared with excluded URLs (a list of regular expressions, one alternation, a
ConfigurationError naming the variable for an invalid one) and the readers of WSGI-environ headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from opentelemetry.propagators.textmap import Getter

from veil._cache import remember
from veil.errors import ConfigurationError
from veil.instrumentation._http.semconv import CACHE_LIMIT


def compile_alternatives(variable: str, patterns: Sequence[str], flags: int = 0) -> re.Pattern[str] | None:
    """One regular expression matching any of `patterns`; None for none; ConfigurationError naming `variable`."""
    if not patterns:
        return None
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigurationError(
                variable, pattern, "valid Python regular expressions, comma-separated", reason=str(error)
            ) from error
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns), flags)


class HeaderCapture:
    """Which headers to record (case-insensitive full match of any pattern) and which values to hide.

    Values of sensitive headers (veil.redaction's built-in list and secret-looking names) are always
    redacted, even when `.*` is captured; names matching any `sanitize` pattern (case-insensitive search) are
    redacted too.
    Decisions are cached per header name.
    """

    __slots__ = ("_decisions", "_prefix", "_sanitize", "_wanted")

    def __init__(self, patterns: Sequence[str], sanitize: Sequence[str], prefix: str, variable: str) -> None:
        wanted = compile_alternatives(variable, patterns, re.IGNORECASE)
        assert wanted is not None
        self._wanted = wanted
        self._sanitize = compile_alternatives(
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", sanitize, re.IGNORECASE
        )
        self._prefix = prefix
        # lowercased name -> (attribute name, redact?) or None when not captured
        self._decisions: dict[str, tuple[str, bool] | None] = {}

    def _decide(self, name: str) -> tuple[str, bool] | None:
        decision = self._decisions.get(name, False)
        if decision is not False:
            return decision  # type: ignore[return-value]
        from veil.redaction.url import is_sensitive_header

        result: tuple[str, bool] | None = None
        if self._wanted.fullmatch(name):
            sanitize = self._sanitize is not None and self._sanitize.search(name) is not None
            result = (f"{self._prefix}.{name}", sanitize or is_sensitive_header(name))
        return remember(self._decisions, name, result, CACHE_LIMIT)

    def attributes(self, headers: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
        """`http.{request,response}.header.<lowercased name>` -> values, for the captured headers only."""
        from veil.redaction.url import HEADER_MARKER, redact_header_value

        collected: dict[str, list[str]] = {}
        for raw_name, value in headers:
            name = raw_name.lower()
            decision = self._decide(name)
            if decision is None:
                continue
            attribute, redact = decision
            recorded = value
            if redact:
                recorded = redact_header_value(name, value)
                if recorded == value and value:
                    recorded = HEADER_MARKER
            collected.setdefault(attribute, []).append(recorded)
        return {key: tuple(values) for key, values in collected.items()}


# --------------------------------------------------------------------------------------- WSGI environ


class _EnvironGetter(Getter[Mapping[str, Any]]):
    """Reads propagation headers out of a WSGI environ (or Django META)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        if value is None:
            return None
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [key[5:].lower().replace("_", "-") for key in carrier if key.startswith("HTTP_")]


ENVIRON_GETTER: Final = _EnvironGetter()


def environ_headers(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The request headers of a WSGI environ as (lowercased name with dashes, value) pairs."""
    headers: list[tuple[str, str]] = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].lower().replace("_", "-"), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.append((key.lower().replace("_", "-"), value))
    return headers
