"""Helpers of the monitoring tests: locating the shipped configuration, the Prometheus binaries, free ports,
making the shipped rules fast, and a webhook receiver standing in for a notification service."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[2]
MONITORING = REPOSITORY / "examples" / "shop" / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
RULE_FILES = (MONITORING / "rules" / "recording.yml", MONITORING / "rules" / "alerts.yml")
ALERTMANAGER_CONFIG = MONITORING / "alertmanager.yml"


def binary(*names: str) -> str | None:
    """The first of `names` found on PATH (Debian names the Alertmanager binary prometheus-alertmanager)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_WINDOW = re.compile(r"\[\d+[smhdwy]\]")
_FOR = re.compile(r"^(\s*for:\s*)\S+", re.MULTILINE)


def fast_rules(text: str, window: str = "10s", hold: str = "1s") -> str:
    """The shipped rules with every range window and every `for:` shortened, for a test that cannot wait
    minutes. Expressions, names, labels and thresholds stay as shipped."""
    return _FOR.sub(lambda match: match.group(1) + hold, _WINDOW.sub(f"[{window}]", text))


def fast_alertmanager(text: str, webhook_url: str) -> str:
    """The shipped Alertmanager configuration with short group timers and its webhook pointed at the test."""
    text = re.sub(r"(\burl:\s*)\S+", lambda match: match.group(1) + webhook_url, text)
    text = re.sub(r"(\bgroup_wait:\s*)\S+", lambda match: match.group(1) + "1s", text)
    return re.sub(r"(\bgroup_interval:\s*)\S+", lambda match: match.group(1) + "1s", text)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 recording the JSON bodies Alertmanager posts to it."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._condition = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._condition:
                    receiver.payloads.append(json.loads(body or b"{}"))
                    receiver._condition.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for_alert(self, matches: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """The first alert (from any payload) for which `matches` is true, waiting at most `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for payload in self.payloads:
                    for alert in payload.get("alerts", []):
                        if matches(alert):
                            return dict(alert)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(min(remaining, 1.0))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
