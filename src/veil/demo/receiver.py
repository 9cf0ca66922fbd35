"""The demo's OTLP/HTTP receiver: collects what the three services export, and relays it on request.

The services export OTLP/HTTP (protobuf) to this receiver on 127.0.0.1, so the demo can draw one tree per
trace across processes. With a relay endpoint (`--otlp-endpoint`, `--jaeger`) every accepted request body is
also posted, unchanged, to that endpoint by one background thread, so a collector or Jaeger receives exactly
what the services sent.
"""

from __future__ import annotations

import gzip
import queue
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

__all__ = ["DemoReceiver", "RelayStatus"]

_SIGNALS = {"/v1/traces": "traces", "/v1/logs": "logs", "/v1/metrics": "metrics"}
_MAX_BODY = 32 * 1024 * 1024
_RELAY_TIMEOUT_SECONDS = 5.0


@dataclass
class RelayStatus:
    """What the relay sent on, and the first failure (a message, never a payload)."""

    endpoint: str
    sent: int = 0
    failed: int = 0
    first_error: str = ""


@dataclass
class _Store:
    traces: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    logs: list[logs_service_pb2.ExportLogsServiceRequest] = field(default_factory=list)
    metrics: int = 0
    rejected: int = 0


class DemoReceiver:
    """An OTLP/HTTP protobuf receiver on a free loopback port, with an optional relay."""

    def __init__(self, relay_endpoint: str | None = None, relay_signals: frozenset[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._store = _Store()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.receiver = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="veil-demo-receiver", daemon=True
        )
        self.relay: RelayStatus | None = None
        self._relay_signals = relay_signals or frozenset(_SIGNALS.values())
        self._outbox: queue.Queue[tuple[str, dict[str, str], bytes] | None] = queue.Queue()
        self._relay_thread: threading.Thread | None = None
        if relay_endpoint is not None:
            self.relay = RelayStatus(relay_endpoint.rstrip("/"))
            self._relay_thread = threading.Thread(target=self._relay_loop, name="veil-demo-relay", daemon=True)

    @property
    def endpoint(self) -> str:
        """The OTLP/HTTP base URL to give the services (OTEL_EXPORTER_OTLP_ENDPOINT)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> DemoReceiver:
        self._thread.start()
        if self._relay_thread is not None:
            self._relay_thread.start()
        return self

    def stop(self, relay_timeout: float = 10.0) -> None:
        """Stop receiving, then give the relay at most `relay_timeout` seconds to send what is queued."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2.0)
        if self._relay_thread is not None and self._relay_thread.is_alive():
            self._outbox.put(None)
            self._relay_thread.join(relay_timeout)

    # -- reading

    def trace_requests(self) -> list[trace_service_pb2.ExportTraceServiceRequest]:
        with self._lock:
            return list(self._store.traces)

    def log_requests(self) -> list[logs_service_pb2.ExportLogsServiceRequest]:
        with self._lock:
            return list(self._store.logs)

    @property
    def metric_requests(self) -> int:
        with self._lock:
            return self._store.metrics

    @property
    def rejected_requests(self) -> int:
        with self._lock:
            return self._store.rejected

    # -- receiving (handler threads)

    def _accept(self, signal: str, body: bytes, headers: dict[str, str]) -> bool:
        try:
            raw = _decompress(headers.get("content-encoding", ""), body)
            message: Any
            if signal == "traces":
                message = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
            elif signal == "logs":
                message = logs_service_pb2.ExportLogsServiceRequest.FromString(raw)
            else:
                message = metrics_service_pb2.ExportMetricsServiceRequest.FromString(raw)
        except Exception:  # anything undecodable is refused, whatever the protobuf runtime raises
            with self._lock:
                self._store.rejected += 1
            return False
        with self._lock:
            if signal == "traces":
                self._store.traces.append(message)
            elif signal == "logs":
                self._store.logs.append(message)
            else:
                self._store.metrics += 1
        if self.relay is not None and signal in self._relay_signals:
            self._outbox.put((signal, headers, body))
        return True

    def _relay_loop(self) -> None:
        import httpx

        relay = self.relay
        assert relay is not None
        with httpx.Client(timeout=_RELAY_TIMEOUT_SECONDS) as client:
            while True:
                item = self._outbox.get()
                if item is None:
                    return
                signal, headers, body = item
                forwarded = {
                    key: value for key, value in headers.items() if key in ("content-type", "content-encoding")
                }
                try:
                    response = client.post(f"{relay.endpoint}/v1/{signal}", content=body, headers=forwarded)
                    if response.status_code >= 300:
                        raise RuntimeError(f"HTTP {response.status_code} for /v1/{signal}")
                    relay.sent += 1
                except Exception as error:
                    relay.failed += 1
                    if not relay.first_error:
                        relay.first_error = f"{type(error).__name__}: {error}"


def _decompress(encoding: str, body: bytes) -> bytes:
    encoding = encoding.strip().lower()
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding in ("", "identity"):
        return body
    raise ValueError(f"unsupported content encoding {encoding!r}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # the demo's output stays readable
        return

    def do_POST(self) -> None:
        signal = _SIGNALS.get(self.path.split("?", 1)[0])
        length = int(self.headers.get("Content-Length") or 0)
        if signal is None or length < 0 or length > _MAX_BODY:
            self._answer(404 if signal is None else 413)
            return
        body = self.rfile.read(length)
        headers = {key.lower(): value for key, value in self.headers.items()}
        if "protobuf" not in headers.get("content-type", ""):
            self._answer(415)
            return
        receiver: DemoReceiver = self.server.receiver  # type: ignore[attr-defined]
        self._answer(200 if receiver._accept(signal, body, headers) else 400)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
