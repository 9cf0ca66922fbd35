"""Input correlation: did a value that came in with the current request reach this sensitive argument?

The request's inputs are split once per request, on the first question: path segments, query values, header
values (minus transport headers), cookie values, values the application added (`RequestScope.add_input`) and
a bounded prefix of a body the framework already read (Flask/werkzeug's cached data and parsed form; veil never
reads a body itself). Only values of at least MIN_LENGTH characters count (shorter ones match by chance), at
most MAX_INPUTS of them, each cut at MAX_VALUE characters; a value matches when it occurs, as received or
URL-decoded, inside the argument, or when an argument of at least MIN_CONTAINED characters occurs inside it.
"""

from __future__ import annotations

import sys
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, unquote_plus

from veil.security.request import RequestScope

MIN_LENGTH: Final = 4
MIN_CONTAINED: Final = 12
MAX_INPUTS: Final = 64
MAX_VALUE: Final = 4096
MAX_BODY: Final = 16384
_TRANSPORT_HEADERS: Final = frozenset(
    {"host", "connection", "content-length", "accept", "accept-encoding", "accept-language", "content-type",
     "traceparent", "tracestate", "baggage", "keep-alive", "te", "upgrade-insecure-requests", "cache-control",
     "pragma", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip"}
)  # fmt: skip


def inputs_of(scope: RequestScope) -> tuple[tuple[str, str], ...]:
    """The (source, value) pairs of a request, split once and kept on the scope."""
    cached = scope.inputs
    if cached is not None:
        return cached
    found: list[tuple[str, str]] = []

    def add(source: str, value: str) -> None:
        if len(found) < MAX_INPUTS and len(value) >= MIN_LENGTH:
            found.append((source, value[:MAX_VALUE]))

    path, _, query = scope.target.partition("?")
    literals = set((scope.resolve_route() or "").split("/"))  # the route's own words are not input
    for segment in unquote(path).split("/"):
        if segment not in literals:
            add("path", segment)
    for name, value in parse_qsl(query, keep_blank_values=False)[:MAX_INPUTS]:
        add(f"query:{name}", value)
    for name, value in scope.headers.items():
        if name in _TRANSPORT_HEADERS:
            continue
        if name == "cookie":
            for part in value.split(";"):
                cookie_name, _, cookie_value = part.strip().partition("=")
                add(f"cookie:{cookie_name}", cookie_value)
        else:
            add(f"header:{name}", value)
    for source, value in scope.extra_inputs:
        add(source, value)
    for source, value in _framework_body():
        add(source, value)
    result = tuple(found)
    scope.inputs = result
    return result


def _framework_body() -> list[tuple[str, str]]:
    """What a framework has already read of the body of the current request (never reads it)."""
    found: list[tuple[str, str]] = []
    flask = sys.modules.get("flask")
    if flask is None:
        return found
    try:
        if not flask.has_request_context():
            return found
        request: Any = flask.request._get_current_object()
        form = request.__dict__.get("form")
        if form is not None:
            for name, value in list(form.items(multi=True))[:MAX_INPUTS]:
                found.append((f"body:{name}", str(value)))
        data = getattr(request, "_cached_data", None)
        if isinstance(data, bytes) and data:
            found.append(("body", data[:MAX_BODY].decode("latin-1")))
    except Exception:
        return found
    return found


def correlate(scope: RequestScope, argument: str) -> tuple[bool, str | None]:
    """Whether (and from where) a request input occurs inside `argument`, or a long enough `argument` occurs
    inside an unparsed input (an eval'd string inside a posted body)."""
    whole = len(argument) >= MIN_CONTAINED
    for source, value in inputs_of(scope):
        if value in argument or (whole and argument in value):
            return True, source
        decoded = unquote_plus(value)
        if decoded != value and len(decoded) >= MIN_LENGTH and decoded in argument:
            return True, source
    return False, None
