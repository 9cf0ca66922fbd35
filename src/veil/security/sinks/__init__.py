"""SIEM sinks: where findings and audit events go besides OTLP, chosen by VEIL_SECURITY_SINKS.

One module per kind: `jsonl` (ECS JSON lines), `syslog` (RFC 5424 with structured data, and CEF), `webhook`
(generic JSON and Splunk HEC); `ecs` is the document every sink formats from, `base` the queue, thread,
retries and accounting they share. `build_sinks(settings, redact)` turns the (already validated) setting into
sink objects; nothing is started until the first event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from veil.security.sinks.base import Sink
from veil.security.sinks.jsonl import JSONLinesSink
from veil.security.sinks.syslog import SyslogSink
from veil.security.sinks.webhook import WebhookSink

JSONL_MAX_BYTES = 100 * 1024 * 1024

__all__ = ["JSONLinesSink", "Sink", "SyslogSink", "WebhookSink", "build_sinks"]


def build_sinks(settings: Any, redact: Callable[[str, Any], Any]) -> list[Sink]:
    """The sinks `settings.security_sinks` names, in order."""
    sinks: list[Sink] = []
    capacity = settings.security_sink_queue_size
    app_name = settings.service_name or "veil"
    for spec in settings.security_sinks:
        kind, _, rest = spec.partition(":")
        kind = kind.lower()
        if kind == "jsonl":
            path = None if rest in ("", "stdout", "-") else rest
            sinks.append(JSONLinesSink(path, JSONL_MAX_BYTES, capacity, redact))
        elif kind.startswith(("syslog", "cef")):
            parts = urlsplit(spec)
            transport = "tcp" if kind.endswith("+tcp") else "udp"
            sinks.append(
                SyslogSink(
                    parts.hostname or "",
                    parts.port or 514,
                    transport=transport,
                    cef=kind.startswith("cef"),
                    app_name=app_name,
                    capacity=capacity,
                    redact=redact,
                )
            )
        else:
            sinks.append(
                WebhookSink(spec, settings.security_webhook_headers, settings.security_splunk_token, capacity, redact)
            )
    return sinks
