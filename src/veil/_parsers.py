"""Parsers of configuration values, one per kind of value (booleans, choices, endpoints, header lists, ...).

Each takes (variable, raw), where raw is the environment string or a keyword-argument value, and returns the
typed value or raises one `ConfigurationError` naming the variable, the accepted values and the closest valid
one. `veil.settings` declares which option uses which parser.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from veil.errors import ConfigurationError, closest_match

_T = TypeVar("_T")
_N = TypeVar("_N", int, float)
Parser = Callable[[str, object], Any]

SEMCONV_MODES = ("stable", "dup")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

HIDDEN = "<hidden>"  # stands for a value an error message must not repeat (it may hold a credential)


def parse_str(variable: str, raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ConfigurationError(variable, f"<{type(raw).__name__}>", "a string")
    value = raw.strip()
    return value or None


def parse_bool(variable: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off", ""):
            return False
    raise ConfigurationError(variable, raw, "true, false")


def split(raw: object, variable: str) -> list[str]:
    if isinstance(raw, str):
        return [item.strip() for item in raw.split(",") if item.strip()]
    if isinstance(raw, Sequence):
        items = []
        for item in raw:
            if not isinstance(item, str):
                raise ConfigurationError(variable, raw, "a comma-separated string or a list of strings")
            items.append(item.strip())
        return [item for item in items if item]
    raise ConfigurationError(variable, raw, "a comma-separated string or a list of strings")


def string_list(variable: str, raw: object) -> tuple[str, ...]:
    return tuple(split(raw, variable))


def contrib_instrumentation_names() -> set[str]:
    """Every instrumentation the upstream launcher knows (its bootstrap table), installed here or not, so that
    one OTEL_PYTHON_DISABLED_INSTRUMENTATIONS value shared across a fleet stops no service; names as the
    package suffix and with underscores (`system_metrics`), plus gRPC's four entry points."""
    prefix = "opentelemetry-instrumentation-"
    try:
        from opentelemetry.instrumentation import bootstrap_gen
    except ImportError:  # pragma: no cover - shipped with opentelemetry-instrumentation
        return set()
    names: set[str] = {"grpc_client", "grpc_server", "grpc_aio_client", "grpc_aio_server"}
    packages = [library["instrumentation"] for library in bootstrap_gen.libraries]
    for package in [*packages, *bootstrap_gen.default_instrumentations]:
        name = re.split(r"[=<>!~ ]", package, maxsplit=1)[0].removeprefix(prefix)
        names.update((name, name.replace("-", "_")))
    return names


def instrumentation_names(variable: str, raw: object) -> tuple[str, ...]:
    """Instrumentation names: veil's registry and any `opentelemetry_instrumentor` entry point (installed or
    not for veil's own), or `*`; a misspelt name is an error, not a silent no-op."""
    names = split(raw, variable)
    if not names:
        return ()
    from importlib.metadata import entry_points

    from veil import instrumentation

    known = {
        "*",
        *instrumentation.available(),
        *(entry.name for entry in entry_points(group=instrumentation.GROUP)),
        *contrib_instrumentation_names(),
    }
    for name in names:
        if name not in known:
            raise ConfigurationError(variable, raw, known, reason=f"unknown name {name!r}", near=name)
    return tuple(dict.fromkeys(names))


def choice_list(choices: Sequence[str]) -> Parser:
    def parse(variable: str, raw: object) -> tuple[str, ...]:
        items = [item.lower() for item in split(raw, variable)]
        seen: list[str] = []
        for item in items:
            if item not in choices:
                raise ConfigurationError(variable, raw, choices, reason=f"unknown name {item!r}", near=item)
            if item not in seen:
                seen.append(item)
        if "none" in seen and len(seen) > 1:
            raise ConfigurationError(variable, raw, choices, reason="'none' cannot be combined with others")
        return tuple(seen)

    return parse


def choice(choices: Sequence[str]) -> Parser:
    def parse(variable: str, raw: object) -> str | None:
        if raw is None:
            return None
        if not isinstance(raw, str) or raw.strip().lower() not in choices:
            raise ConfigurationError(variable, raw, choices)
        return raw.strip().lower()

    return parse


def mask_url(url: str) -> str:
    """A URL fit for a message: userinfo and every query value replaced, scheme, host, port and path kept."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "****@" + netloc.rsplit("@", 1)[1]
    query = "&".join(
        f"{member.partition('=')[0]}=****" if "=" in member else member for member in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def endpoint(variable: str, raw: object) -> str | None:
    value = parse_str(variable, raw)
    if value is None:
        return None
    accepted = "an absolute http:// or https:// URL such as http://localhost:4318"
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise ConfigurationError(variable, mask_url(value), "a port number from 1 to 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(variable, mask_url(value), accepted, reason="endpoint needs a scheme and a host")
    if not port_ok:
        raise ConfigurationError(variable, mask_url(value), "a port number from 1 to 65535")
    return value


def _number(variable: str, raw: object, convert: Callable[[Any], _N], accepted: str) -> _N:
    """`raw` (a string, stripped, or a number; never a bool) converted, or one error naming what is accepted."""
    if isinstance(raw, bool):
        raise ConfigurationError(variable, raw, accepted)
    try:
        return convert(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError) as error:
        raise ConfigurationError(variable, raw, accepted) from error


def int_range(minimum: int, maximum: int | None = None) -> Parser:
    def parse(variable: str, raw: object) -> int | None:
        if raw is None:
            return None
        accepted = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
        value = _number(variable, raw, int, accepted)
        if value < minimum or (maximum is not None and value > maximum):
            raise ConfigurationError(variable, raw, accepted)
        return value

    return parse


def ratio(variable: str, raw: object) -> float | None:
    if raw is None:
        return None
    accepted = "a number from 0.0 to 1.0"
    value = _number(variable, raw, float, accepted)
    if not 0.0 <= value <= 1.0:
        raise ConfigurationError(variable, raw, accepted)
    return value


_KEY = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")


def key_values(variable: str, raw: object) -> dict[str, str]:
    """`key1=value1,key2=value2` with percent-encoded values (the W3C Baggage octet rules OTel uses)."""
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return {str(key): str(value) for key, value in raw.items()}
    accepted = "comma-separated key=value pairs, values percent-encoded"
    if not isinstance(raw, str):
        raise ConfigurationError(variable, f"<{type(raw).__name__}>", accepted)
    result: dict[str, str] = {}
    for position, member in enumerate(raw.split(","), start=1):
        if not member.strip():
            continue
        key, separator, value = member.partition("=")
        key = key.strip()
        if not separator or not _KEY.match(key):
            # Never echo any part of the value: headers carry credentials.
            raise ConfigurationError(variable, HIDDEN, accepted, reason=f"member {position} is malformed")
        result[unquote(key)] = unquote(value.strip())
    return result


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def headers(variable: str, raw: object) -> dict[str, str]:
    """OTLP export headers: names lower-cased (gRPC metadata must be), no control characters anywhere."""
    headers = {key.strip().lower(): value for key, value in key_values(variable, raw).items()}
    for position, (key, value) in enumerate(headers.items(), start=1):
        if not _KEY.match(key) or _CONTROL.search(value):
            raise ConfigurationError(
                variable,
                HIDDEN,
                "header names of token characters and values without control characters",
                reason=f"header {position} is malformed",
            )
    return headers


def parse_semconv_mode(variable: str, raw: object) -> str:
    """OTEL_SEMCONV_STABILITY_OPT_IN is a list of opt-ins; for HTTP, `http/dup` means dup, else stable."""
    if isinstance(raw, str) and raw.strip().lower() in SEMCONV_MODES:
        return raw.strip().lower()
    items = [item.lower() for item in split(raw, variable)]
    return "dup" if "http/dup" in items else "stable"


def parse_database_semconv_mode(variable: str, raw: object) -> str:
    """OTEL_SEMCONV_STABILITY_OPT_IN for databases: `database/dup` means dup, anything else stable."""
    if isinstance(raw, str) and raw.strip().lower() in SEMCONV_MODES:
        return raw.strip().lower()
    items = [item.lower() for item in split(raw, variable)]
    return "dup" if "database/dup" in items else "stable"


DB_LIBRARIES = ("sqlite3", "psycopg", "psycopg2", "pymysql", "sqlalchemy", "redis")


def log_format(variable: str, raw: object) -> str | None:
    """A %-style logging format string whose fields every record has: the LogRecord attributes and veil's
    trace fields (checked by formatting a synthetic record, as the handler will)."""
    value = parse_str(variable, raw)
    if value is None:
        return None
    accepted = "a %-style logging format such as %(message)s"
    try:
        logging.PercentStyle(value).validate()
    except ValueError as error:
        raise ConfigurationError(variable, raw, accepted) from error
    from veil.instrumentation.stdlib_logging import empty_fields

    record = logging.LogRecord("veil", logging.INFO, __file__, 1, "message", None, None)
    fields = {**record.__dict__, **empty_fields("service"), "message": "message", "asctime": "2026-01-01 00:00:00"}
    try:
        value % fields  # what logging's PercentStyle does with a record's attributes
    except KeyError as error:
        field = str(error.args[0]) if error.args else ""
        known = sorted(name for name in fields if not name.startswith("_"))
        raise ConfigurationError(
            variable,
            raw,
            f"{accepted}, naming only these fields: {', '.join(known)}",
            reason=f"unknown field {field!r}{suggestion(field, known)}",
        ) from None
    except (TypeError, ValueError) as error:
        raise ConfigurationError(variable, raw, accepted, reason=str(error)) from None
    return value


def suggestion(name: str, choices: Sequence[str]) -> str:
    closest = closest_match(name, choices) if name else None
    return f", did you mean {closest!r}?" if closest else ""


def span_event_level(variable: str, raw: object) -> str:
    """A log level name, `off`, or a boolean (true means warning)."""
    if isinstance(raw, bool):
        return "warning" if raw else "off"
    if isinstance(raw, str):
        lowered = raw.strip().lower()
        if lowered in LOG_LEVELS or lowered == "off":
            return lowered
        if lowered in ("true", "1", "yes", "on"):
            return "warning"
        if lowered in ("false", "0", "no", ""):
            return "off"
    raise ConfigurationError(variable, raw, ("off", "true", "false", *LOG_LEVELS))


SINK_FORMS = (
    "jsonl",
    "jsonl:<file path>",
    "syslog+udp://host:port",
    "syslog+tcp://host:port",
    "cef+udp://host:port",
    "cef+tcp://host:port",
    "webhook+https://host/path",
    "splunk+https://host:8088",
)
_NETWORK_SINKS = ("syslog", "syslog+udp", "syslog+tcp", "cef", "cef+udp", "cef+tcp")
_HTTP_SINKS = ("webhook+http", "webhook+https", "splunk+http", "splunk+https")


def security_sinks(variable: str, raw: object) -> tuple[str, ...]:
    """Security event sinks (veil.security.sinks): each a `kind:target` form, checked here, built later."""
    sinks = split(raw, variable)
    for sink in sinks:
        kind = sink.partition(":")[0].lower()
        if kind == "jsonl":
            continue
        problem = ""
        try:
            parts = urlsplit(sink)
            port = parts.port
        except ValueError:
            parts, port, problem = None, None, "the port is not a number from 1 to 65535"
        if parts is not None and kind in _NETWORK_SINKS and not (parts.hostname and port):
            problem = "a syslog address needs a host and a port"
        elif parts is not None and kind in _HTTP_SINKS and not parts.hostname:
            problem = "a webhook URL needs a host"
        elif kind not in _NETWORK_SINKS and kind not in _HTTP_SINKS:
            import difflib

            close = difflib.get_close_matches(kind, ("jsonl", *_NETWORK_SINKS, *_HTTP_SINKS), n=1)
            problem = f"unknown sink kind {kind!r}" + (f"; did you mean {close[0]}?" if close else "")
        if problem:
            raise ConfigurationError(variable, mask_url(sink), SINK_FORMS, reason=problem)
    return tuple(sinks)


def networks(variable: str, raw: object) -> tuple[str, ...]:
    """Addresses or CIDR networks, checked with the ipaddress module."""
    import ipaddress

    items = split(raw, variable)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigurationError(
                variable, item, "IP addresses or networks such as 10.0.0.0/8,127.0.0.1", reason="not an address"
            ) from None
    return tuple(items)
