"""HTTP delivery: a generic JSON webhook and the Splunk HTTP Event Collector.

`webhook+https://host/path` POSTs each batch as a JSON array of ECS documents, with the headers of
`VEIL_SECURITY_WEBHOOK_HEADERS`. `splunk+https://host:8088` POSTs to `/services/collector/event` (or the path
given) the HEC envelope, one `{"time", "host", "source", "sourcetype", "event"}` object per event,
concatenated as HEC batches them, with `Authorization: Splunk <VEIL_SECURITY_SPLUNK_TOKEN>`. The standard
library's http.client is used on purpose: veil does not trace or propagate into its own deliveries.
A 429 or 5xx answer, a timeout or a refused connection is retried with backoff (honouring Retry-After up to
5 s); other answers fail at once. Messages name the URL without credentials and never the headers.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from veil._parsers import mask_url
from veil.security.sinks.base import DeliveryError, Sink
from veil.security.sinks.ecs import Document

HEC_PATH = "/services/collector/event"
TIMEOUT_SECONDS = 5.0


def _epoch_seconds(stamp: str) -> float:
    import calendar
    import time

    return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + int(stamp[20:23] or 0) / 1000


class WebhookSink(Sink):
    """`webhook+http(s)://...` (generic JSON) or `splunk+http(s)://...` (HEC)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        splunk_token: str | None,
        capacity: int,
        redact: Callable[[str, Any], Any],
    ) -> None:
        flavour, _, target = url.partition("+")
        self.splunk = flavour.lower() == "splunk"
        self.kind = "splunk_hec" if self.splunk else "webhook"
        super().__init__(mask_url(target), capacity, redact)
        parts = urlsplit(target)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        path = parts.path or (HEC_PATH if self.splunk else "/")
        if self.splunk and path == "/":
            path = HEC_PATH
        self.path = path + (f"?{parts.query}" if parts.query else "")
        self.headers = {"Content-Type": "application/json", "User-Agent": "veil-security-sink", **headers}
        if self.splunk:
            self.headers["Authorization"] = f"Splunk {splunk_token}"
        self.hostname = socket.gethostname()
        self._connection: http.client.HTTPConnection | None = None

    def body(self, documents: Sequence[Document]) -> bytes:
        if not self.splunk:
            return json.dumps(list(documents), ensure_ascii=False, separators=(",", ":"), default=str).encode()
        envelopes = (
            {
                "time": _epoch_seconds(document["@timestamp"]),
                "host": self.hostname,
                "source": "veil",
                "sourcetype": "veil:security",
                "event": document,
            }
            for document in documents
        )
        return "".join(json.dumps(item, separators=(",", ":"), default=str) for item in envelopes).encode()

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self.https:
                context = ssl.create_default_context()
                self._connection = http.client.HTTPSConnection(
                    self.host, self.port, timeout=TIMEOUT_SECONDS, context=context
                )
            else:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_SECONDS)
        return self._connection

    def send(self, documents: Sequence[Document]) -> None:
        payload = self.body(documents)
        try:
            connection = self._connect()
            connection.request("POST", self.path, body=payload, headers=self.headers)
            response = connection.getresponse()
            response.read()
            status = response.status
            retry_after = response.getheader("Retry-After")
            if response.getheader("Connection", "").lower() == "close":
                self.close_transport()
        except (OSError, http.client.HTTPException) as error:
            self.close_transport()
            raise DeliveryError(type(error).__name__) from None
        if 200 <= status < 300:
            return
        delay = None
        if retry_after is not None and retry_after.strip().isdigit():
            delay = float(retry_after.strip())
        raise DeliveryError(f"HTTP {status}", retry=status == 429 or status >= 500, delay=delay)

    def close_transport(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None
