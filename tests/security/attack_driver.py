"""The scripted attacker against examples/vulnerable, run by test_example_attacks.py INSIDE a private network
namespace (loopback only; /etc/hosts replaced so metadata.google.internal is 127.0.0.1).

Starts the OTLP receiver and a fake upstream on 127.0.0.1, serves the example with `veil run -- gunicorn`, sends
one malicious request per attack and a benign replay (each with its own traceparent), stops gunicorn with SIGTERM
and prints one JSON report: per request its trace id, status and findings; start-up findings; span attributes.

    python -m tests.security.attack_driver MODE SENTINEL     (MODE: detect | block)
"""

from __future__ import annotations

import http.server
import json
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures.otlp import OTLPReceiver

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
METADATA_NAME = "metadata.google.internal"  # /etc/hosts in the namespace says 127.0.0.1


class _Evil:
    """Pickles to builtins.eval(<code>): what an attacker posts to /load."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function = function
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args


def eval_payload() -> bytes:
    return pickle.dumps(_Evil(eval, "__import__('os').getpid()"))


def import_payload() -> bytes:
    return b"cpty\nopenpty\n(tR."  # protocol 0: GLOBAL pty.openpty, call with ()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"upstream data\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def request(base: str, label: str, path: str, body: bytes | None = None) -> dict[str, Any]:
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    call = urllib.request.Request(base + path, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(call, timeout=20) as response:
            status, text = response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode("utf-8", "replace")
    return {"label": label, "trace_id": trace_id, "status": status, "body": text[:300]}


def main(mode: str, sentinel: str) -> dict[str, Any]:
    receiver = OTLPReceiver().start()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    upstream_port = upstream.server_address[1]
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_"))}
    env.update(
        {
            "OTEL_SERVICE_NAME": "vulnerable",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_BLRP_SCHEDULE_DELAY": "50",
            "VEIL_SECURITY": mode,
            "VEIL_SECURITY_SIGNALS": "false",  # request-level signals (issue 15) are tested on their own
            "VEIL_SECURITY_RULES": str(ROOT / "examples" / "vulnerable" / "rules.yaml"),
            "VEIL_STARTUP_REPORT": "false",
        }
    )
    server = subprocess.Popen(
        [str(BIN / "veil"), "run", "--", str(BIN / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{port}",
         "examples.vulnerable.app:app"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the example service did not start") from None
                time.sleep(0.1)
        attacks = [
            ("command-injection", f"/ping?host=127.0.0.1;touch%20{sentinel}", None),
            ("ssrf-metadata-ip", "/fetch?url=http://169.254.169.254/latest/meta-data/iam/", None),
            (
                "ssrf-metadata-name",
                f"/fetch?url=http://metadata.google.internal:{upstream_port}/computeMetadata/v1/",
                None,
            ),
            ("path-traversal", "/file?name=../../../../../../../../etc/passwd", None),
            ("pickle-eval", "/load", eval_payload()),
            ("pickle-import", "/load", import_payload()),
            ("native-library", "/plugin?name=libc.so.6", None),
        ]
        benign = [
            ("benign-ping", "/ping?host=example.org", None),
            ("benign-fetch", f"/fetch?url=http://127.0.0.1:{upstream_port}/data", None),
            ("benign-file", "/file?name=report.txt", None),
            ("benign-load", "/load", pickle.dumps({"items": [1, 2], "note": "hello"})),
            ("benign-plugin", "/plugin?name=libm.so.6", None),
            ("benign-health", "/healthz", None),
        ]
        sent = [request(base, label, path, body) for label, path, body in attacks + benign]
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0].decode("utf-8", "replace")
        upstream.shutdown()
    time.sleep(0.5)
    findings = [log for log in receiver.logs() if log.event_name == "veil.security.finding"]
    spans = {span.trace_id: span for span in receiver.spans() if span.kind == "SERVER"}
    counters: dict[str, float] = {}
    for metric in receiver.metrics("veil.security.findings"):
        for point in metric.points:
            counters[str(point.attributes.get("rule"))] = max(
                counters.get(str(point.attributes.get("rule")), 0), point.value
            )
    by_trace: dict[str, list[dict[str, Any]]] = {}
    startup: list[str] = []
    for log in findings:
        entry = {
            "rule": log.attributes.get("security_rule.uuid"),
            "correlated": log.attributes.get("veil.security.correlated"),
            "action": log.attributes.get("veil.security.action"),
            "severity": log.severity_text,
            "span_id": log.span_id,
            "body": str(log.body),
        }
        if log.trace_id:
            by_trace.setdefault(log.trace_id, []).append(entry)
        else:
            startup.append(str(log.body))
    for item in sent:
        item["findings"] = by_trace.pop(item["trace_id"], [])
        span = spans.get(item["trace_id"])
        item["span"] = None if span is None else {
            "span_id": span.span_id,
            "attributes": {key: value for key, value in span.attributes.items() if key.startswith("veil.security")},
            "events": [event.name for event in span.events],
        }  # fmt: skip
    receiver.stop()
    return {
        "requests": sent,
        "other_traces": by_trace,
        "startup": startup,
        "counters": counters,
        "sentinel_exists": os.path.exists(sentinel),
        "server_output": output[-4000:],
    }


if __name__ == "__main__":
    report = main(sys.argv[1], sys.argv[2])
    print(json.dumps(report, default=list))
