"""Findings: what a detection produces, and `emit()`, the one way to report one.

`emit()` stamps the finding with the active trace and span, redacts its message and fields with veil's
Redactor, then records what belongs to the trace for every finding (an event on the active span, the
`veil.security.findings` attribute on the request's SERVER span, the `veil.security.findings` counter) and
passes it to noise control, which publishes it (or its aggregate, or the exact dropped-count summary) as an
OpenTelemetry log record named `veil.security.finding` and to every listener (issue 15's SIEM sinks).
Nothing here raises into the caller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from opentelemetry import _logs as logs_api
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.semconv._incubating.attributes.security_rule_attributes import (
    SECURITY_RULE_CATEGORY,
    SECURITY_RULE_NAME,
    SECURITY_RULE_REFERENCE,
    SECURITY_RULE_RULESET_NAME,
    SECURITY_RULE_UUID,
    SECURITY_RULE_VERSION,
)
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.util.types import AttributeValue

from veil._fork import after_fork
from veil._guard import log_once
from veil._version import __version__
from veil.security.noise import NoiseControl, NoiseStats
from veil.security.request import current_request

__all__ = [
    "EVENT_NAME",
    "PRIORITIES",
    "Blocked",
    "Finding",
    "add_listener",
    "emit",
]

EVENT_NAME: Final = "veil.security.finding"
METRIC_NAME: Final = "veil.security.findings"
SERVER_SPAN_FINDINGS: Final = "veil.security.findings"  # int: findings so far on this request
SERVER_SPAN_RULES: Final = "veil.security.rules"  # string[]: the rule ids, in order of first appearance
SERVER_SPAN_BLOCKED: Final = "veil.security.blocked"  # string: the rule id that blocked the request
_SCOPE_NAME: Final = "veil.security"

# Falco's priorities, most severe first, and the OpenTelemetry severity each one maps to.
SEVERITIES: Final[Mapping[str, SeverityNumber]] = {
    "EMERGENCY": SeverityNumber.FATAL4,
    "ALERT": SeverityNumber.FATAL3,
    "CRITICAL": SeverityNumber.FATAL,
    "ERROR": SeverityNumber.ERROR,
    "WARNING": SeverityNumber.WARN,
    "NOTICE": SeverityNumber.INFO2,
    "INFORMATIONAL": SeverityNumber.INFO,
    "DEBUG": SeverityNumber.DEBUG,
}
PRIORITIES: Final = tuple(SEVERITIES)


@dataclass(frozen=True)
class Finding:
    """One detection: which rule, what happened, and (once emitted) where in which trace."""

    rule_id: str
    rule_name: str
    category: str
    priority: str
    message: str
    source: str
    technique: str | None = None
    ruleset: str = "veil-default"
    reference: str | None = None
    fields: Mapping[str, AttributeValue] = field(default_factory=dict)
    correlated: bool = False
    action: str = "detect"
    count: int = 1
    trace_id: int = 0
    span_id: int = 0
    time_unix_nano: int = 0

    def attributes(self) -> dict[str, AttributeValue]:
        """The attributes of the log record: security_rule.*, veil.security.*, then the event/request fields."""
        attributes: dict[str, AttributeValue] = {
            SECURITY_RULE_UUID: self.rule_id,
            SECURITY_RULE_NAME: self.rule_name,
            SECURITY_RULE_CATEGORY: self.category,
            SECURITY_RULE_RULESET_NAME: self.ruleset,
            SECURITY_RULE_VERSION: __version__,
            "veil.security.priority": self.priority,
            "veil.security.source": self.source,
            "veil.security.action": self.action,
            "veil.security.correlated": self.correlated,
            "veil.security.count": self.count,
        }
        if self.reference:
            attributes[SECURITY_RULE_REFERENCE] = self.reference
        if self.technique:
            attributes["veil.security.technique"] = self.technique
        for key, value in self.fields.items():
            attributes.setdefault(key, value)
        return attributes


class Blocked(PermissionError):
    """Raised by the sensor in block mode instead of the call a rule matched; veil's server instrumentation
    answers a request that lets it propagate with 403."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"blocked by veil security rule {finding.rule_id}: {finding.rule_name}")
        self.finding = finding


# ------------------------------------------------------------------------------------------ listeners

Listener = Callable[[Finding], None]


class _Listeners:
    items: tuple[Listener, ...] = ()
    lock = threading.Lock()


def _fresh_lock_in_child() -> None:
    _Listeners.lock = threading.Lock()


after_fork(_fresh_lock_in_child)


def add_listener(listener: Listener) -> Callable[[], None]:
    """Subscribe `listener` to every published finding (redacted, trace-stamped); returns the unsubscribe.

    A listener must be quick (enqueue only); what it raises is caught and logged once.
    """
    with _Listeners.lock:
        _Listeners.items = (*_Listeners.items, listener)

    def remove() -> None:
        with _Listeners.lock:
            _Listeners.items = tuple(item for item in _Listeners.items if item is not listener)

    return remove


# ------------------------------------------------------------------------------------------- outputs


class _Outputs:
    """The logger, the counter and the redactor, rebuilt when veil is configured again (new providers)."""

    logger_provider: object = None
    logger: logs_api.Logger | None = None
    meter_provider: object = None
    counter: metrics.Counter | None = None
    redactor: Any = None
    redaction_off = False
    noise: NoiseControl | None = None


def _logger() -> logs_api.Logger:
    provider = logs_api.get_logger_provider()
    if provider is not _Outputs.logger_provider or _Outputs.logger is None:
        _Outputs.logger = provider.get_logger(_SCOPE_NAME, __version__)
        _Outputs.logger_provider = provider
    return _Outputs.logger


def _counter() -> metrics.Counter:
    provider = metrics.get_meter_provider()
    if provider is not _Outputs.meter_provider or _Outputs.counter is None:
        meter = provider.get_meter(_SCOPE_NAME, __version__)
        _Outputs.counter = meter.create_counter(
            METRIC_NAME, unit="{finding}", description="Security findings, by rule, severity and route."
        )
        _Outputs.meter_provider = provider
    return _Outputs.counter


def _redactor() -> Any:
    redactor = _Outputs.redactor
    if redactor is None:
        from veil import settings as settings_module
        from veil.redaction import Redactor

        settings = settings_module.current()
        _Outputs.redaction_off = not settings.redaction_enabled
        redactor = _Outputs.redactor = Redactor.from_settings(settings)
    return redactor


def _noise() -> NoiseControl:
    noise = _Outputs.noise
    if noise is None:
        noise = _Outputs.noise = NoiseControl(_publish)
    return noise


def configure_noise(*, window: float, rate: float, burst: int) -> None:
    """Set the aggregation window (seconds, 0 = off), the rate (findings/s, 0 = unlimited) and the burst."""
    noise = _noise()
    noise.flush()
    noise.window, noise.rate, noise.burst = window, max(rate, 0.0), burst


def reset() -> None:
    """Forget cached outputs and publish what noise control holds (veil.configure() calls this)."""
    if _Outputs.noise is not None:
        _Outputs.noise.flush()
    _Outputs.logger_provider = _Outputs.meter_provider = None
    _Outputs.logger = None
    _Outputs.counter = None
    _Outputs.redactor = None


def flush() -> None:
    """Publish pending aggregates and the dropped-count summary now."""
    if _Outputs.noise is not None:
        _Outputs.noise.flush()


def stats() -> NoiseStats:
    """Findings submitted, published, aggregated and dropped since start."""
    return _noise().stats()


# ---------------------------------------------------------------------------------------------- emit


def emit(finding: Finding) -> None:
    """Report `finding`: stamp, redact, record on the trace and the counter, then publish through noise
    control to the log stream and the listeners. Never raises."""
    try:
        _emit(finding)
    except Exception:
        log_once("security.emit", "veil: failed to emit a security finding", exc_info=True)


def _emit(finding: Finding) -> None:
    span = trace.get_current_span()
    context = span.get_span_context()
    changes: dict[str, Any] = {}
    if finding.trace_id == 0 and context.is_valid:
        changes["trace_id"] = context.trace_id
        changes["span_id"] = context.span_id
    if finding.time_unix_nano == 0:
        changes["time_unix_nano"] = time.time_ns()
    scope = current_request()
    fields = finding.fields
    if scope is not None and HTTP_ROUTE not in fields:
        route = scope.resolve_route()
        if route:
            fields = {**fields, HTTP_ROUTE: route}
    redacted_fields, message = _redacted(fields, finding.message)
    if redacted_fields is not finding.fields:
        changes["fields"] = redacted_fields
    if message is not finding.message:
        changes["message"] = message
    if changes:
        finding = replace(finding, **changes)

    event_attributes = finding.attributes()
    if span.is_recording():
        span.add_event(EVENT_NAME, event_attributes, finding.time_unix_nano)
    if scope is not None:
        _mark_server_span(scope, finding)
    counter_attributes: dict[str, AttributeValue] = {"rule": finding.rule_id, "severity": finding.priority.lower()}
    route_value = finding.fields.get(HTTP_ROUTE)
    if route_value:
        counter_attributes[HTTP_ROUTE] = route_value
    _counter().add(finding.count, counter_attributes)
    _noise().submit(finding)


def _redacted(fields: Mapping[str, AttributeValue], message: str) -> tuple[Mapping[str, AttributeValue], str]:
    redactor = _redactor()
    if _Outputs.redaction_off:
        return fields, message
    changed: dict[str, AttributeValue] | None = None
    for key, value in fields.items():
        clean = redactor.redact(key, value)
        if clean is not value:
            if changed is None:
                changed = dict(fields)
            changed[key] = clean
    clean_message = redactor.redact(None, message)
    return (fields if changed is None else changed), (
        clean_message if isinstance(clean_message, str) else "[REDACTED:error]"
    )


def _mark_server_span(scope: Any, finding: Finding) -> None:
    scope.findings += finding.count
    if finding.rule_id not in scope.rule_ids:
        scope.rule_ids = (*scope.rule_ids, finding.rule_id)
    server_span = scope.server_span
    if server_span is not None and server_span.is_recording():
        attributes: dict[str, AttributeValue] = {
            SERVER_SPAN_FINDINGS: scope.findings,
            SERVER_SPAN_RULES: list(scope.rule_ids),
        }
        if finding.action == "block":
            attributes[SERVER_SPAN_BLOCKED] = finding.rule_id
        server_span.set_attributes(attributes)


def _publish(finding: Finding) -> None:
    """The log record and the listeners, for what noise control lets through (may run on its timer thread)."""
    try:
        if finding.trace_id:
            span_context = SpanContext(finding.trace_id, finding.span_id, False, TraceFlags(TraceFlags.SAMPLED))
            context = trace.set_span_in_context(NonRecordingSpan(span_context), otel_context.Context())
        else:
            context = otel_context.Context()
        _logger().emit(
            timestamp=finding.time_unix_nano or time.time_ns(),
            observed_timestamp=time.time_ns(),
            context=context,
            severity_number=SEVERITIES.get(finding.priority, SeverityNumber.WARN),
            severity_text=finding.priority,
            body=finding.message,
            attributes=finding.attributes(),
            event_name=EVENT_NAME,
        )
    except Exception:
        log_once("security.log", "veil: failed to write a security finding to the log stream", exc_info=True)
    for listener in _Listeners.items:
        try:
            listener(finding)
        except Exception:
            log_once(
                f"security.listener.{getattr(listener, '__qualname__', type(listener).__qualname__)}",
                "veil: a security finding listener raised (ignored)",
                exc_info=True,
            )
