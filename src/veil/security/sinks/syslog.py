"""RFC 5424 syslog over UDP or TCP, with the event as structured data, or CEF as the message.

A record is `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [veil@32473 name="value" ...] MSG`. Facility is
4 (security/authorization) for findings and 13 (log audit) for audit events; severity is the finding's
priority (informational for audit successes, warning for failures). The structured data element `veil@32473`
(32473 is the enterprise number RFC 5612 reserves for documentation; SIEM parsers key on the name) holds the
flattened ECS fields, names cut to the 32 characters RFC 5424 allows, values escaped (`"`, `\\`, `]`). UDP sends
one datagram per record (cut at 8 KiB); TCP uses octet-counting framing (RFC 6587), which rsyslog, syslog-ng
and the Azure Monitor Agent read, and reconnects after an error.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Sequence
from typing import Any

from veil.security.sinks.base import DeliveryError, Sink, flatten
from veil.security.sinks.cef import format_cef
from veil.security.sinks.ecs import Document

SD_ID = "veil@32473"
MAX_DATAGRAM = 8192
_NAME_UNSAFE = re.compile(r'[^\x21-\x7e]|[=\] "]')
_HEADER_UNSAFE = re.compile(r"[^\x21-\x7e]")
_SKIPPED = frozenset({"@timestamp", "message"})


def _sd_value(value: object) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header(value: object, limit: int) -> str:
    return _HEADER_UNSAFE.sub("_", str(value))[:limit] or "-"


def _severity(document: Document) -> int:
    event = document.get("event", {})
    if event.get("kind") == "alert":
        return int(event.get("severity", 5))
    return 4 if event.get("outcome") == "failure" else 6


def format_rfc5424(document: Document, app_name: str, hostname: str, structured: bool = True, message: str = "") -> str:
    """One RFC 5424 record (without framing) for one ECS document."""
    event = document.get("event", {})
    alert = event.get("kind") == "alert"
    priority = (4 if alert else 13) * 8 + _severity(document)
    msgid = "finding" if alert else "audit"
    data = "-"
    if structured:
        params = []
        for name, value in flatten(document).items():
            if name in _SKIPPED or value is None:
                continue
            params.append(f'{_NAME_UNSAFE.sub("_", name)[:32]}="{_sd_value(value)}"')
        data = f"[{SD_ID} {' '.join(params)}]"
    text = message or str(document.get("message", ""))
    header = f"<{priority}>1 {document['@timestamp']} {_header(hostname, 255)} {_header(app_name, 48)} {os.getpid()}"
    return f"{header} {msgid} {data} \ufeff{text}"


class SyslogSink(Sink):
    """`syslog+udp|tcp://host:port` (structured data) or `cef+udp|tcp://host:port` (CEF message)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        transport: str,
        cef: bool,
        app_name: str,
        capacity: int,
        redact: Callable[[str, Any], Any],
    ) -> None:
        self.kind = f"{'cef' if cef else 'syslog'}_{transport}"
        super().__init__(f"{'cef' if cef else 'syslog'}+{transport}://{host}:{port}", capacity, redact)
        self.address = (host, port)
        self.transport = transport
        self.cef = cef
        self.app_name = app_name
        self.hostname = socket.gethostname()
        self._socket: socket.socket | None = None

    def _record(self, document: Document) -> bytes:
        if self.cef:
            line = format_rfc5424(
                document, self.app_name, self.hostname, structured=False, message=format_cef(document)
            )
        else:
            line = format_rfc5424(document, self.app_name, self.hostname)
        return line.encode("utf-8")

    def send(self, documents: Sequence[Document]) -> None:
        records = [self._record(document) for document in documents]
        try:
            if self.transport == "udp":
                if self._socket is None:
                    self._socket = socket.socket(_family(self.address[0]), socket.SOCK_DGRAM)
                for record in records:
                    self._socket.sendto(record[:MAX_DATAGRAM], self.address)
            else:
                if self._socket is None:
                    self._socket = socket.create_connection(self.address, timeout=5.0)
                self._socket.sendall(b"".join(b"%d %s" % (len(record), record) for record in records))
        except OSError as error:
            self.close_transport()
            raise DeliveryError(f"{type(error).__name__} ({error.strerror or error})") from None

    def close_transport(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
