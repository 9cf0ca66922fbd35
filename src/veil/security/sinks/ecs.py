"""Findings and audit events as Elastic Common Schema documents: the one shape every sink formats from.

ECS fields used (https://www.elastic.co/guide/en/ecs/current/): `@timestamp`, `message`, `event.kind`
(`alert` for findings, `event` for audit events), `event.category`, `event.type`, `event.action`,
`event.outcome`, `event.severity` (the syslog severity of the finding's priority, 0 emergency ... 7 debug),
`event.dataset`, `log.level`, `rule.id|name|category|ruleset|reference`, `threat.framework`,
`threat.technique.id`, `trace.id`, `span.id`, `source.ip` (or `source.address` when not an IP), `user.id`,
`url.path`, `http.request.method`, `user_agent.original`, `service.name`. What ECS has no field for lives
under `veil.*`. Findings arrive redacted (veil.security.findings.emit); audit attributes are redacted here,
on the sink's thread, with the process's Redactor.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_ROUTE
from opentelemetry.semconv.attributes.url_attributes import URL_PATH
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL

from veil.security.audit import ENDUSER_ID, AuditEvent
from veil.security.findings import Finding

SecurityEvent = AuditEvent | Finding

Document = dict[str, Any]
Redact = Callable[[str, Any], Any]

SYSLOG_SEVERITY = {
    "EMERGENCY": 0,
    "ALERT": 1,
    "CRITICAL": 2,
    "ERROR": 3,
    "WARNING": 4,
    "NOTICE": 5,
    "INFORMATIONAL": 6,
    "DEBUG": 7,
}
_CATEGORY = {
    "command-injection": "process",
    "code-execution": "process",
    "native-code": "process",
    "deserialization": "process",
    "ssrf": "network",
    "file-access": "file",
    "auth-burst": "authentication",
}
_AUTH_ACTIONS = ("login", "logout", "authentication", "password")
_REQUEST_FIELDS = frozenset(
    {CLIENT_ADDRESS, URL_PATH, HTTP_REQUEST_METHOD, USER_AGENT_ORIGINAL, ENDUSER_ID, HTTP_ROUTE}
)


def timestamp(time_unix_nano: int) -> str:
    """RFC 3339 UTC with milliseconds, the form ECS, syslog and Splunk all read."""
    seconds, nanos = divmod(time_unix_nano or time.time_ns(), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos // 1_000_000:03d}Z"


def _set(document: Document, dotted: str, value: Any) -> None:
    if value is None or value == "":
        return
    node = document
    *parents, leaf = dotted.split(".")
    for parent in parents:
        node = node.setdefault(parent, {})
    node[leaf] = value


def _request_fields(document: Document, fields: Mapping[str, Any]) -> None:
    address = fields.get(CLIENT_ADDRESS)
    if isinstance(address, str) and address:
        try:
            ipaddress.ip_address(address)
            _set(document, "source.ip", address)
        except ValueError:
            _set(document, "source.address", address)
    _set(document, "user.id", fields.get(ENDUSER_ID))
    _set(document, "url.path", fields.get(URL_PATH))
    _set(document, "http.request.method", fields.get(HTTP_REQUEST_METHOD))
    _set(document, "user_agent.original", fields.get(USER_AGENT_ORIGINAL))
    _set(document, "veil.http.route", fields.get(HTTP_ROUTE))


def _trace(document: Document, trace_id: int, span_id: int) -> None:
    if trace_id:
        _set(document, "trace.id", f"{trace_id:032x}")
    if span_id:
        _set(document, "span.id", f"{span_id:016x}")


def finding_document(finding: Finding) -> Document:
    """A (redacted) finding as an ECS alert."""
    document: Document = {"@timestamp": timestamp(finding.time_unix_nano), "message": finding.message}
    categories = ["intrusion_detection"]
    if finding.category in _CATEGORY:
        categories.append(_CATEGORY[finding.category])
    elif finding.source == "request":
        categories.append("web")
    document["event"] = {
        "kind": "alert",
        "category": categories,
        "type": ["indicator"],
        "action": finding.category,
        "outcome": "unknown",
        "severity": SYSLOG_SEVERITY.get(finding.priority.upper(), 5),
        "dataset": "veil.security.finding",
    }
    document["log"] = {"level": finding.priority.lower()}
    document["rule"] = {"id": finding.rule_id, "name": finding.rule_name, "category": finding.category}
    _set(document, "rule.ruleset", finding.ruleset)
    _set(document, "rule.reference", finding.reference)
    if finding.technique:
        document["threat"] = {"framework": "MITRE ATT&CK", "technique": {"id": [finding.technique]}}
    _trace(document, finding.trace_id, finding.span_id)
    fields = dict(finding.fields)
    _request_fields(document, fields)
    veil: Document = {"source": finding.source, "action": finding.action, "count": finding.count}
    if finding.correlated:
        veil["correlated"] = True
    extra = {key: value for key, value in fields.items() if key not in _REQUEST_FIELDS}
    if extra:
        veil["fields"] = extra
    document["veil"] = {**document.get("veil", {}), **veil}
    return document


def audit_document(event: AuditEvent, redact: Redact) -> Document:
    """An audit event as an ECS event; every free value passes through `redact` (key, value)."""
    action = event.action
    document: Document = {
        "@timestamp": timestamp(event.time_unix_nano),
        "message": redact("message", f"audit {action} {event.outcome}"),
        "event": {"kind": "event", "action": action, "outcome": event.outcome, "dataset": "veil.audit"},
    }
    if action.lower().startswith(_AUTH_ACTIONS):
        document["event"]["category"] = ["authentication"]
        kind = "start" if action.lower().startswith("login") else "end" if "logout" in action.lower() else "info"
        document["event"]["type"] = [kind]
    _trace(document, event.trace_id, event.span_id)
    request = {key: redact(key, value) for key, value in event.request.items()}
    if event.actor is not None:
        request[ENDUSER_ID] = redact(ENDUSER_ID, event.actor)
    _request_fields(document, request)
    audit: Document = {}
    if event.target is not None:
        audit["target"] = redact("veil.audit.target", event.target)
    for key, value in event.attributes.items():
        audit[key] = redact(key, value)
    if audit:
        document.setdefault("veil", {})["audit"] = audit
    return document


def document(event: SecurityEvent, redact: Redact, service: Mapping[str, str] | None = None) -> Document:
    """The ECS document of a finding or an audit event, with `service.*` when known."""
    result = audit_document(event, redact) if isinstance(event, AuditEvent) else finding_document(event)
    if service:
        result["service"] = dict(service)
    return result
