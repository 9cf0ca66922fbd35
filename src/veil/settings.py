"""The one typed Settings object: every option veil reads, its variable, type, default and documentation.

Precedence is keyword arguments > environment > defaults. Standard OpenTelemetry variables keep their spec
names; `VEIL_*` variables exist only where OpenTelemetry has no name. Every value is validated when the
Settings object is built, so a mistake raises one `ConfigurationError` naming the variable and the accepted
values before anything is installed. The configuration reference in docs/ is generated from `OPTIONS`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from veil._exporters import EXPORTER_NAMES, Signal
from veil._parsers import (
    DB_LIBRARIES,
    HIDDEN,
    LOG_LEVELS,
    Parser,
    choice,
    choice_list,
    endpoint,
    headers,
    instrumentation_names,
    int_range,
    key_values,
    log_format,
    networks,
    parse_bool,
    parse_database_semconv_mode,
    parse_semconv_mode,
    parse_str,
    ratio,
    security_sinks,
    span_event_level,
    string_list,
)
from veil.errors import ConfigurationError
from veil.propagation import PROPAGATOR_NAMES

_T = TypeVar("_T")

# The names each exporter variable accepts come from the exporter registry (veil._exporters).
TRACES_EXPORTERS = EXPORTER_NAMES["traces"]
METRICS_EXPORTERS = EXPORTER_NAMES["metrics"]
LOGS_EXPORTERS = EXPORTER_NAMES["logs"]
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
COMPRESSIONS = ("gzip", "none")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


# ---------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Option:
    """What the configuration reference says about one setting."""

    name: str
    env: str | None
    parser: Parser
    default: object
    doc: str
    example: str


# Settings that carry credentials: never shown in repr(), reports or errors.
SECRET_ENVS = frozenset(
    {
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        "VEIL_REDACTION_HASH_KEY",
        "VEIL_SECURITY_WEBHOOK_HEADERS",
        "VEIL_SECURITY_SPLUNK_TOKEN",
        "VEIL_AUDIT_KEY",
        "VEIL_AUDIT_ENDUSER_HASH_KEY",
    }
)


def option(env: str | None, parser: Parser, default: Any, doc: str, example: str = "") -> Any:
    """Declare one Settings field: its variable, parser, default and documentation line."""
    metadata = {"env": env, "parser": parser, "doc": doc, "example": example}
    shown = env not in SECRET_ENVS and parser is not endpoint  # endpoints may carry userinfo or tokens
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata, repr=shown)
    return field(default=default, metadata=metadata, repr=shown)


_SIGNAL_ENDPOINT_DOC = "OTLP endpoint for {0} only, used as is (no /v1/{0} path is appended)."


@dataclass(frozen=True)
class Settings:
    """Every option veil reads. Build it with `Settings.load(**overrides)`; it is immutable."""

    # --- general
    sdk_disabled: bool = option(
        "OTEL_SDK_DISABLED",
        parse_bool,
        False,
        "Disable veil and the SDK entirely: nothing is installed or exported.",
        "true",
    )
    service_name: str | None = option(
        "OTEL_SERVICE_NAME",
        parse_str,
        None,
        "service.name of this process (default unknown_service:<executable name>).",
        "checkout",
    )
    service_version: str | None = option(
        "VEIL_SERVICE_VERSION", parse_str, None, "service.version resource attribute.", "1.4.2"
    )
    environment: str | None = option(
        "VEIL_ENVIRONMENT", parse_str, None, "deployment.environment.name resource attribute.", "production"
    )
    resource_attributes: dict[str, str] = option(
        "OTEL_RESOURCE_ATTRIBUTES",
        key_values,
        {},
        "Extra resource attributes; explicit settings above win over the same keys here.",
        "team=payments,service.namespace=shop",
    )
    auto_instrument: bool = option(
        "VEIL_AUTO_INSTRUMENT",
        parse_bool,
        True,
        "veil.configure() also instruments every supported library that is installed, each on its first import.",
        "false",
    )
    disabled_instrumentations: tuple[str, ...] = option(
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
        instrumentation_names,
        (),
        "Instrumentation names (entry-point names, as upstream) not to load; * disables all; "
        "an unknown name is an error.",
        "urllib,requests",
    )
    startup_report: bool = option(
        "VEIL_STARTUP_REPORT",
        parse_bool,
        False,
        "Log a report of the configuration and instrumentation at startup (veil run turns it on).",
        "true",
    )
    shutdown_timeout_millis: int = option(
        "VEIL_SHUTDOWN_TIMEOUT",
        int_range(0),
        5000,
        "Upper bound in milliseconds on flushing and shutting down at process exit.",
        "3000",
    )

    # --- exporters
    traces_exporter: tuple[str, ...] | None = option(
        "OTEL_TRACES_EXPORTER",
        choice_list(TRACES_EXPORTERS),
        None,
        "Span exporters, comma-separated. Default: otlp when an OTLP endpoint is set, else console.",
        "otlp,zipkin",
    )
    metrics_exporter: tuple[str, ...] | None = option(
        "OTEL_METRICS_EXPORTER",
        choice_list(METRICS_EXPORTERS),
        None,
        "Metric exporters, comma-separated. Default: otlp when an OTLP endpoint is set, else none.",
        "otlp",
    )
    logs_exporter: tuple[str, ...] | None = option(
        "OTEL_LOGS_EXPORTER",
        choice_list(LOGS_EXPORTERS),
        None,
        "Log exporters, comma-separated. Default: otlp when an OTLP endpoint is set, else none.",
        "otlp",
    )
    otlp_endpoint: str | None = option(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        endpoint,
        None,
        "Base OTLP endpoint. Default http://localhost:4317 (grpc) or http://localhost:4318 (http/protobuf).",
        "http://collector:4318",
    )
    otlp_traces_endpoint: str | None = option(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        endpoint,
        None,
        _SIGNAL_ENDPOINT_DOC.format("traces"),
        "http://collector:4318/v1/traces",
    )
    otlp_metrics_endpoint: str | None = option(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        endpoint,
        None,
        _SIGNAL_ENDPOINT_DOC.format("metrics"),
        "http://collector:4318/v1/metrics",
    )
    otlp_logs_endpoint: str | None = option(
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        endpoint,
        None,
        _SIGNAL_ENDPOINT_DOC.format("logs"),
        "http://collector:4318/v1/logs",
    )
    otlp_protocol: str = option(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        choice(OTLP_PROTOCOLS),
        "http/protobuf",
        "OTLP transport for all signals.",
        "grpc",
    )
    otlp_traces_protocol: str | None = option(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        choice(OTLP_PROTOCOLS),
        None,
        "OTLP transport for traces.",
        "grpc",
    )
    otlp_metrics_protocol: str | None = option(
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        choice(OTLP_PROTOCOLS),
        None,
        "OTLP transport for metrics.",
        "grpc",
    )
    otlp_logs_protocol: str | None = option(
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", choice(OTLP_PROTOCOLS), None, "OTLP transport for logs.", "grpc"
    )
    otlp_headers: dict[str, str] = option(
        "OTEL_EXPORTER_OTLP_HEADERS",
        headers,
        {},
        "Headers sent with every OTLP export (credentials are masked in every report).",
        "api-key=secret",
    )
    otlp_traces_headers: dict[str, str] = option(
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        headers,
        {},
        "Headers for trace exports only, used instead of OTEL_EXPORTER_OTLP_HEADERS.",
        "x-team=a",
    )
    otlp_metrics_headers: dict[str, str] = option(
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        headers,
        {},
        "Headers for metric exports only, used instead of OTEL_EXPORTER_OTLP_HEADERS.",
        "x-team=a",
    )
    otlp_logs_headers: dict[str, str] = option(
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        headers,
        {},
        "Headers for log exports only, used instead of OTEL_EXPORTER_OTLP_HEADERS.",
        "x-team=a",
    )
    otlp_timeout_millis: int = option(
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        int_range(1),
        10000,
        "Timeout of one OTLP export, milliseconds.",
        "5000",
    )
    otlp_compression: str | None = option(
        "OTEL_EXPORTER_OTLP_COMPRESSION", choice(COMPRESSIONS), None, "OTLP payload compression.", "gzip"
    )
    otlp_traces_timeout_millis: int | None = option(
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", int_range(1), None, "Timeout of one trace export, milliseconds.", "5000"
    )
    otlp_metrics_timeout_millis: int | None = option(
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", int_range(1), None, "Timeout of one metric export, milliseconds.", "5000"
    )
    otlp_logs_timeout_millis: int | None = option(
        "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", int_range(1), None, "Timeout of one log export, milliseconds.", "5000"
    )
    otlp_traces_compression: str | None = option(
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", choice(COMPRESSIONS), None, "Compression of trace exports.", "gzip"
    )
    otlp_metrics_compression: str | None = option(
        "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", choice(COMPRESSIONS), None, "Compression of metric exports.", "gzip"
    )
    otlp_logs_compression: str | None = option(
        "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", choice(COMPRESSIONS), None, "Compression of log exports.", "gzip"
    )
    zipkin_endpoint: str = option(
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
        endpoint,
        "http://localhost:9411/api/v2/spans",
        "Zipkin v2 JSON span endpoint.",
        "http://zipkin:9411/api/v2/spans",
    )
    zipkin_timeout_millis: int = option(
        "OTEL_EXPORTER_ZIPKIN_TIMEOUT",
        int_range(1),
        10000,
        "Timeout of one Zipkin export, milliseconds.",
        "5000",
    )

    # --- context propagation and sampling
    propagators: tuple[str, ...] = option(
        "OTEL_PROPAGATORS",
        choice_list(PROPAGATOR_NAMES),
        ("tracecontext", "baggage"),
        "Context propagation formats, in order.",
        "tracecontext,baggage,b3multi",
    )
    traces_sampler: str = option(
        "OTEL_TRACES_SAMPLER",
        choice(SAMPLERS),
        "parentbased_always_on",
        "Head sampler.",
        "parentbased_traceidratio",
    )
    traces_sampler_arg: float | None = option(
        "OTEL_TRACES_SAMPLER_ARG",
        ratio,
        None,
        "Sampling ratio for the *traceidratio samplers (default 1.0).",
        "0.25",
    )

    # --- batching and limits (the SDK's own variables, validated here and passed explicitly)
    bsp_schedule_delay_millis: int = option(
        "OTEL_BSP_SCHEDULE_DELAY", int_range(1), 5000, "Delay between two span batch exports, ms.", "1000"
    )
    bsp_export_timeout_millis: int = option(
        "OTEL_BSP_EXPORT_TIMEOUT",
        int_range(1),
        30000,
        "Maximum time one span batch export may take, ms.",
        "10000",
    )
    bsp_max_queue_size: int = option(
        "OTEL_BSP_MAX_QUEUE_SIZE",
        int_range(1),
        2048,
        "Spans kept waiting for export; beyond it spans are dropped and counted.",
        "8192",
    )
    bsp_max_export_batch_size: int = option(
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        int_range(1),
        512,
        "Spans per export batch (at most the queue size).",
        "1024",
    )
    blrp_schedule_delay_millis: int = option(
        "OTEL_BLRP_SCHEDULE_DELAY", int_range(1), 1000, "Delay between two log batch exports, ms.", "5000"
    )
    blrp_export_timeout_millis: int = option(
        "OTEL_BLRP_EXPORT_TIMEOUT",
        int_range(1),
        30000,
        "Maximum time one log batch export may take, ms.",
        "10000",
    )
    blrp_max_queue_size: int = option(
        "OTEL_BLRP_MAX_QUEUE_SIZE", int_range(1), 2048, "Log records kept waiting for export.", "8192"
    )
    blrp_max_export_batch_size: int = option(
        "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", int_range(1), 512, "Log records per export batch.", "1024"
    )
    metric_export_interval_millis: int = option(
        "OTEL_METRIC_EXPORT_INTERVAL",
        int_range(1),
        60000,
        "Interval between two metric exports, ms.",
        "15000",
    )
    metric_export_timeout_millis: int = option(
        "OTEL_METRIC_EXPORT_TIMEOUT",
        int_range(1),
        30000,
        "Maximum time one metric export may take, ms.",
        "10000",
    )
    attribute_value_length_limit: int | None = option(
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        int_range(0),
        None,
        "Longest string attribute value kept (longer values are truncated); default unlimited.",
        "4096",
    )
    attribute_count_limit: int = option(
        "OTEL_ATTRIBUTE_COUNT_LIMIT",
        int_range(0),
        128,
        "Most attributes per span, event, link or log.",
        "256",
    )
    span_attribute_value_length_limit: int | None = option(
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        int_range(0),
        None,
        "Span-only override of the value length limit.",
        "4096",
    )
    span_attribute_count_limit: int | None = option(
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
        int_range(0),
        None,
        "Span-only override of the count limit.",
        "256",
    )
    span_event_count_limit: int = option(
        "OTEL_SPAN_EVENT_COUNT_LIMIT", int_range(0), 128, "Most events per span.", "256"
    )
    span_link_count_limit: int = option("OTEL_SPAN_LINK_COUNT_LIMIT", int_range(0), 128, "Most links per span.", "256")
    event_attribute_count_limit: int | None = option(
        "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", int_range(0), None, "Most attributes per span event.", "64"
    )
    link_attribute_count_limit: int | None = option(
        "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", int_range(0), None, "Most attributes per span link.", "64"
    )

    # --- HTTP instrumentation
    semconv_http_mode: str = option(
        "OTEL_SEMCONV_STABILITY_OPT_IN",
        parse_semconv_mode,
        "stable",
        "HTTP attribute names: stable (default) or, with http/dup, stable and the old names side by side.",
        "http/dup",
    )
    excluded_urls: tuple[str, ...] = option(
        "OTEL_PYTHON_EXCLUDED_URLS",
        string_list,
        (),
        "Regular expressions (comma-separated) of URLs not traced, for every HTTP instrumentation.",
        "healthz,/metrics$",
    )
    http_capture_headers_server_request: tuple[str, ...] = option(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
        string_list,
        (),
        "Inbound request headers recorded as http.request.header.<name> (regular expressions).",
        "x-request-id,content-type",
    )
    http_capture_headers_server_response: tuple[str, ...] = option(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",
        string_list,
        (),
        "Response headers of inbound requests recorded as http.response.header.<name>.",
        "content-type",
    )
    http_capture_headers_client_request: tuple[str, ...] = option(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
        string_list,
        (),
        "Outbound request headers recorded as http.request.header.<name>.",
        "x-request-id",
    )
    http_capture_headers_client_response: tuple[str, ...] = option(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE",
        string_list,
        (),
        "Response headers of outbound requests recorded as http.response.header.<name>.",
        "content-type",
    )
    http_capture_headers_sanitize_fields: tuple[str, ...] = option(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS",
        string_list,
        (),
        "Header names (regular expressions) whose captured values are always redacted, in addition to "
        "veil's built-in list of sensitive headers.",
        "x-internal-key,.*session.*",
    )

    # --- database instrumentation
    semconv_database_mode: str = option(
        "OTEL_SEMCONV_STABILITY_OPT_IN",
        parse_database_semconv_mode,
        "stable",
        "Database attribute names: stable (default) or, with database/dup, stable and the old names side by side.",
        "database/dup",
    )
    db_raw_statements: tuple[str, ...] = option(
        "VEIL_DB_RAW_STATEMENTS",
        choice_list(DB_LIBRARIES),
        (),
        "Libraries whose statements are recorded as written, literals included (development only: values in "
        "statements reach the backend; the redactor still masks what it recognises).",
        "sqlite3,sqlalchemy",
    )
    db_capture_parameters: bool = option(
        "VEIL_DB_CAPTURE_PARAMETERS",
        parse_bool,
        False,
        "Record bound query parameters as db.query.parameter.<key> (values pass through the redactor).",
        "true",
    )

    # --- metrics ---
    prometheus_host: str = option(
        "OTEL_EXPORTER_PROMETHEUS_HOST",
        parse_str,
        "localhost",
        "Address the prometheus exporter's scrape endpoint listens on (0.0.0.0 for every interface).",
        "0.0.0.0",
    )
    prometheus_port: int = option(
        "OTEL_EXPORTER_PROMETHEUS_PORT",
        int_range(0, 65535),
        9464,
        "Port of the prometheus exporter's scrape endpoint (0 picks a free port).",
        "9464",
    )
    prometheus_worker_ports: int = option(
        "VEIL_PROMETHEUS_WORKER_PORTS",
        int_range(1, 1024),
        1,
        "Consecutive ports, from the port above, that processes of one service may bind (one per worker): "
        "a process whose port is taken by a sibling takes the next free one.",
        "4",
    )
    runtime_metrics: bool = option(
        "VEIL_RUNTIME_METRICS",
        parse_bool,
        True,
        "Record process and CPython runtime metrics (CPU, memory, file descriptors, threads, GC), "
        "read when metrics are collected.",
        "false",
    )

    # --- logs ---
    log_correlation: bool = option(
        "OTEL_PYTHON_LOG_CORRELATION",
        parse_bool,
        False,
        "Also give the root logger a handler whose format shows the trace fields (when it has no handler yet). "
        "Records always carry the fields while the logging instrumentation is active.",
        "true",
    )
    log_format: str | None = option(
        "OTEL_PYTHON_LOG_FORMAT",
        log_format,
        None,
        "Format of that handler (default: time, level, logger, trace_id, span_id, service.name, message); "
        "fields: LogRecord attributes and the trace fields, checked at start-up.",
        "%(asctime)s %(levelname)s trace_id=%(trace_id)s %(message)s",
    )
    log_level: str = option(
        "OTEL_PYTHON_LOG_LEVEL",
        choice(LOG_LEVELS),
        "info",
        "Root logger level set with OTEL_PYTHON_LOG_CORRELATION.",
        "debug",
    )
    logs_export_level: str = option(
        "VEIL_LOGS_EXPORT_LEVEL",
        choice(LOG_LEVELS),
        "info",
        "Lowest level of standard-library log records exported as OTLP logs (when a logs exporter is set).",
        "warning",
    )
    logs_span_events: str = option(
        "VEIL_LOGS_SPAN_EVENTS",
        span_event_level,
        "off",
        "Also record log records at this level and above as events on the active span (true means warning).",
        "error",
    )

    # --- redaction ---
    redaction_enabled: bool = option(
        "VEIL_REDACTION_ENABLED",
        parse_bool,
        True,
        "Remove secrets and personal data from all exported telemetry (strongly recommended).",
        "true",
    )
    sensitive_query_parameters: tuple[str, ...] = option(
        "VEIL_SENSITIVE_QUERY_PARAMETERS",
        string_list,
        (),
        "Query parameter names whose values are replaced in every recorded URL, added to the built-in list.",
        "ticket,otp",
    )
    redaction_sensitive_keys: tuple[str, ...] = option(
        "VEIL_REDACTION_SENSITIVE_KEYS",
        string_list,
        (),
        "Extra attribute keys (matched word by word) whose values are always replaced.",
        "customer_note,pin",
    )
    redaction_allowed_keys: tuple[str, ...] = option(
        "VEIL_REDACTION_ALLOWED_KEYS",
        string_list,
        (),
        "Attribute keys never redacted (exact, case-insensitive; `prefix*` for a prefix). Use sparingly.",
        "app.order_reference,internal.*",
    )
    redaction_extra_patterns: dict[str, str] = option(
        "VEIL_REDACTION_EXTRA_PATTERNS",
        key_values,
        {},
        "Extra value patterns, category=regex (percent-encode commas); unsafe (backtracking) patterns are refused.",
        "ticket_token=TCK-[A-Z0-9]%7B24%7D",
    )
    redaction_emails: str = option(
        "VEIL_REDACTION_EMAILS",
        choice(("redact", "hash", "keep")),
        "redact",
        "E-mail addresses in values: replaced, replaced by a keyed hash (needs the hash key), or kept.",
        "hash",
    )
    redaction_sql: str = option(
        "VEIL_REDACTION_SQL",
        choice(("sensitive", "all", "off")),
        "sensitive",
        "SQL statements: replace literals of secret columns and detected values, every literal (`?`), or none.",
        "all",
    )
    redaction_mode: str = option(
        "VEIL_REDACTION_MODE",
        choice(("mark", "hash")),
        "mark",
        "Replacement: `[REDACTED:category]`, or with an HMAC-SHA256 prefix so equal secrets correlate.",
        "hash",
    )
    redaction_hash_key: str | None = option(
        "VEIL_REDACTION_HASH_KEY",
        parse_str,
        None,
        "Secret key (at least 16 bytes) for hash mode and e-mail policy hash; never logged.",
        "<random 32 bytes>",
    )
    redaction_debug_keys: bool = option(
        "VEIL_REDACTION_DEBUG_KEYS",
        parse_bool,
        False,
        "Also record which attribute keys were redacted (veil.redaction.keys); never the values.",
        "true",
    )
    redaction_log_output: bool = option(
        "VEIL_REDACTION_LOG_OUTPUT",
        parse_bool,
        True,
        "Also redact the process's own log output (stdlib handlers, structlog, loguru); needs redaction on.",
        "false",
    )
    # --- security (runtime detection, veil.security)
    security: str = option(
        "VEIL_SECURITY",
        choice(("off", "detect", "block")),
        "detect",
        "Runtime threat detection by an audit hook: off, detect (findings only) or block (matched calls raise).",
        "block",
    )
    security_rules: tuple[str, ...] = option(
        "VEIL_SECURITY_RULES", string_list, (), "Extra rule files, loaded after the default pack.", "rules.yaml"
    )
    security_disabled_rules: tuple[str, ...] = option(
        "VEIL_SECURITY_DISABLED_RULES", string_list, (), "Rule ids (or titles) to turn off.", "VEIL-RT-DLOPEN"
    )
    security_aggregation_window: int = option(
        "VEIL_SECURITY_AGGREGATION_WINDOW",
        int_range(0, 3600),
        10,
        "Seconds over which identical findings (rule, route, client) are folded into one with a count; 0 = off.",
        "60",
    )
    security_rate_limit: int = option(
        "VEIL_SECURITY_RATE_LIMIT",
        int_range(0),
        10,
        "Findings per second written to the log stream (token bucket); drops are reported exactly; 0 = no limit.",
        "100",
    )
    security_burst: int = option(
        "VEIL_SECURITY_BURST", int_range(1), 50, "Findings the rate limit lets through at once.", "200"
    )

    # --- security events (veil.security: request signals, audit trail, SIEM sinks)
    security_sinks: tuple[str, ...] = option(
        "VEIL_SECURITY_SINKS",
        security_sinks,
        (),
        "Where findings and audit events also go, comma-separated: jsonl (stdout), jsonl:<file>, "
        "syslog+udp|tcp://host:port (RFC 5424), cef+udp|tcp://host:port, webhook+https://..., splunk+https://...",
        "jsonl:/var/log/app/security.jsonl,syslog+tcp://siem:601",
    )
    security_sink_queue_size: int = option(
        "VEIL_SECURITY_SINK_QUEUE_SIZE",
        int_range(1),
        1000,
        "Events each security queue (the audit thread, each sink) holds; beyond it events are dropped and counted.",
        "5000",
    )
    security_webhook_headers: dict[str, str] = option(
        "VEIL_SECURITY_WEBHOOK_HEADERS",
        headers,
        {},
        "Headers sent with every webhook delivery (credentials; never logged).",
        "authorization=Bearer%20abc",
    )
    security_splunk_token: str | None = option(
        "VEIL_SECURITY_SPLUNK_TOKEN",
        parse_str,
        None,
        "Splunk HTTP Event Collector token for splunk+https:// sinks (sent as Authorization: Splunk <token>).",
        "<token>",
    )
    security_signals: bool = option(
        "VEIL_SECURITY_SIGNALS",
        parse_bool,
        True,
        "Request-level attack signals (scanners, probes, injection markers, attack waves, auth-failure bursts).",
        "false",
    )
    security_trusted_proxies: tuple[str, ...] = option(
        "VEIL_SECURITY_TRUSTED_PROXIES",
        networks,
        (),
        "Proxies whose X-Forwarded-For is believed when naming the client (default: none, the peer address).",
        "10.0.0.0/8,127.0.0.1",
    )
    security_wave_threshold: int = option(
        "VEIL_SECURITY_WAVE_THRESHOLD", int_range(2), 15, "Suspicious requests from one client that make a wave.", "30"
    )
    security_wave_window_seconds: int = option(
        "VEIL_SECURITY_WAVE_WINDOW", int_range(1), 60, "Window of an attack wave, seconds.", "120"
    )
    security_auth_burst_threshold: int = option(
        "VEIL_SECURITY_AUTH_BURST_THRESHOLD",
        int_range(2),
        10,
        "Authentication failures (401/403, failed logins) for one client or user that make a burst.",
        "20",
    )
    security_auth_burst_window_seconds: int = option(
        "VEIL_SECURITY_AUTH_BURST_WINDOW", int_range(1), 60, "Window of an auth-failure burst, seconds.", "300"
    )
    audit_file: str | None = option(
        "VEIL_AUDIT_FILE",
        parse_str,
        None,
        "Append-only, hash-chained audit file ({pid} is replaced by the process id); see `veil audit verify`.",
        "/var/log/app/audit-{pid}.jsonl",
    )
    audit_key: str | None = option(
        "VEIL_AUDIT_KEY",
        parse_str,
        None,
        "Secret (at least 16 bytes) that signs the audit file's checkpoints (HMAC-SHA256); never logged.",
        "<random 32 bytes>",
    )
    audit_checkpoint_interval: int = option(
        "VEIL_AUDIT_CHECKPOINT_INTERVAL", int_range(1), 1000, "Audit records between two signed checkpoints.", "100"
    )
    audit_enduser_hash_key: str | None = option(
        "VEIL_AUDIT_ENDUSER_HASH_KEY",
        parse_str,
        None,
        "When set (at least 16 bytes), enduser.id in audit events is an HMAC-SHA256 of the user, not the user.",
        "<random 32 bytes>",
    )

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build validated settings from keyword arguments, then `environ` (default os.environ), then defaults."""
        env = os.environ if environ is None else environ
        known = {item.name: item for item in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ConfigurationError(
                f"veil.configure({unknown[0]}=...)",
                HIDDEN,
                sorted(known),
                reason="unknown keyword argument",
                near=unknown[0],
            )
        values: dict[str, Any] = {}
        for name, spec in known.items():
            variable = spec.metadata["env"]
            parser: Parser = spec.metadata["parser"]
            value = None
            if name in overrides and overrides[name] is not None:
                label = f"{name} (keyword argument)" if variable is None else f"{name} ({variable})"
                value = parser(label, overrides[name])
            if value is None and variable is not None and env.get(variable, "").strip() != "":
                value = parser(variable, env[variable])
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings._check_consistency()
        return settings

    def _check_consistency(self) -> None:
        for name, variable in (
            ("audit_key", "VEIL_AUDIT_KEY"),
            ("audit_enduser_hash_key", "VEIL_AUDIT_ENDUSER_HASH_KEY"),
        ):
            key = getattr(self, name)
            if key is not None and len(key.encode("utf-8")) < 16:
                raise ConfigurationError(variable, HIDDEN, "a secret of at least 16 bytes")
        if any(sink.lower().startswith("splunk") for sink in self.security_sinks) and not self.security_splunk_token:
            raise ConfigurationError(
                "VEIL_SECURITY_SPLUNK_TOKEN",
                None,
                "the HEC token",
                reason="a splunk+ sink in VEIL_SECURITY_SINKS needs it",
            )
        if self.bsp_max_export_batch_size > self.bsp_max_queue_size:
            raise ConfigurationError(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                self.bsp_max_export_batch_size,
                f"an integer <= OTEL_BSP_MAX_QUEUE_SIZE ({self.bsp_max_queue_size})",
            )
        if self.blrp_max_export_batch_size > self.blrp_max_queue_size:
            raise ConfigurationError(
                "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
                self.blrp_max_export_batch_size,
                f"an integer <= OTEL_BLRP_MAX_QUEUE_SIZE ({self.blrp_max_queue_size})",
            )

    # --- derived values (computed from the fields, never stored twice)

    def exporters(self, signal: Signal) -> tuple[str, ...]:
        """The exporter names for one signal, with veil's defaults applied; () means none."""
        chosen: tuple[str, ...] | None = getattr(self, f"{signal}_exporter")
        if chosen is None:
            has_endpoint = self.otlp_endpoint is not None or getattr(self, f"otlp_{signal}_endpoint") is not None
            development_default: tuple[str, ...] = ("console",) if signal == "traces" else ()
            chosen = ("otlp",) if has_endpoint else development_default
        return tuple(name for name in chosen if name != "none")

    def otlp_signal_headers(self, signal: Signal) -> dict[str, str]:
        """Headers of one signal: its own variable when set, else OTEL_EXPORTER_OTLP_HEADERS (never merged)."""
        specific: dict[str, str] = getattr(self, f"otlp_{signal}_headers")
        return dict(specific or self.otlp_headers)

    def otlp_signal_timeout_millis(self, signal: Signal) -> int:
        specific: int | None = getattr(self, f"otlp_{signal}_timeout_millis")
        return self.otlp_timeout_millis if specific is None else specific

    def otlp_signal_compression(self, signal: Signal) -> str | None:
        specific: str | None = getattr(self, f"otlp_{signal}_compression")
        return specific or self.otlp_compression

    def sampler_ratio(self) -> float:
        return 1.0 if self.traces_sampler_arg is None else self.traces_sampler_arg


def options() -> list[Option]:
    """Every option in declaration order, for the configuration reference and the startup report."""
    result = []
    for spec in dataclasses.fields(Settings):
        result.append(
            Option(
                name=spec.name,
                env=spec.metadata["env"],
                parser=spec.metadata["parser"],
                default={} if spec.default is dataclasses.MISSING else spec.default,
                doc=spec.metadata["doc"],
                example=spec.metadata["example"],
            )
        )
    return result


def library_excluded_urls(library: str, environ: Mapping[str, str] | None = None) -> tuple[str, ...] | None:
    """`OTEL_PYTHON_<LIBRARY>_EXCLUDED_URLS`, which replaces OTEL_PYTHON_EXCLUDED_URLS for one library.

    Read once, when the library is instrumented; None when the variable is not set.
    """
    env = os.environ if environ is None else environ
    variable = f"OTEL_PYTHON_{library.upper().replace('-', '_')}_EXCLUDED_URLS"
    if variable not in env:
        return None
    return string_list(variable, env[variable])


_current: Settings | None = None
_current_lock = threading.Lock()


def current() -> Settings:
    """The settings of the last `veil.configure()`, or settings read from the environment if none ran.

    Instrumentations call this once, at instrument time, never per request.
    """
    global _current
    with _current_lock:
        if _current is None:
            _current = Settings.load()
        return _current


def set_current(settings: Settings | None) -> None:
    """Record the settings `veil.configure()` installed (None forgets them)."""
    global _current
    with _current_lock:
        _current = settings
