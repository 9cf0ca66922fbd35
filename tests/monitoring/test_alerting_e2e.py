"""End to end with the real tools: an instrumented service, Prometheus evaluating the shipped rules, and
Alertmanager notifying a webhook, all on 127.0.0.1.

The service (tests/monitoring/shop_app.py, Flask under veil with the prometheus exporter) runs in its own
process; Prometheus scrapes it and evaluates rules every second with the shipped rule files, whose windows
and `for:` durations are shortened (support.fast_rules); Alertmanager runs the shipped configuration with
short group timers and its webhook pointed at a receiver in this test. Traffic with 503 answers on one route
must produce a HighErrorRatio notification naming the service and the route template; a command injection
must produce a SecurityFinding notification naming the rule (veil's runtime detection).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.monitoring.support import (
    ALERTMANAGER_CONFIG,
    REPOSITORY,
    RULE_FILES,
    WebhookReceiver,
    binary,
    fast_alertmanager,
    fast_rules,
    free_port,
)

PROMETHEUS = binary("prometheus")
ALERTMANAGER = binary("alertmanager", "prometheus-alertmanager")
ALERT_DEADLINE_SECONDS = 75.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(150),
    pytest.mark.skipif(
        PROMETHEUS is None or ALERTMANAGER is None,
        reason="needs the prometheus and alertmanager binaries "
        "(apt-get install prometheus prometheus-alertmanager; .ci/run installs them)",
    ),
]


class Processes:
    """Every process this test starts, stopped at the end whatever happened."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        log = (self.directory / f"{name}.log").open("wb")
        process = subprocess.Popen(command, stdout=kwargs.pop("stdout", log), stderr=log, **kwargs)
        self.started.append((name, process))
        return process

    def logs(self) -> str:
        parts = []
        for name, _ in self.started:
            path = self.directory / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def stop_all(self) -> None:
        for _, process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
        for _, process in reversed(self.started):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    webhook = WebhookReceiver()
    yield webhook
    webhook.close()


def wait_ready(url: str, process: subprocess.Popen[bytes], processes: Processes, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url}: the process exited with {process.returncode}\n{processes.logs()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not become ready within {timeout} s\n{processes.logs()}")


def start_service(processes: Processes, metrics_port: int) -> tuple[int, str]:
    """Start the instrumented service; returns its application port and its scrape URL."""
    env = dict(os.environ)
    env.update(
        {
            "OTEL_SERVICE_NAME": "checkout",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")])),
        }
    )
    process = processes.start(
        "service", [sys.executable, "-m", "tests.monitoring.shop_app"], stdout=subprocess.PIPE, cwd=REPOSITORY, env=env
    )
    assert process.stdout is not None
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(30)
    if not line or not line[0]:
        pytest.fail(f"the service did not start\n{processes.logs()}")
    started = json.loads(line[0])
    assert started["metrics"] == f"http://127.0.0.1:{metrics_port}/metrics"
    return int(started["port"]), started["metrics"]


def prometheus_config(metrics_port: int, alertmanager_port: int, rule_files: list[Path]) -> str:
    rules = "\n".join(f"  - {path}" for path in rule_files)
    return f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
{rules}
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{alertmanager_port}"]
scrape_configs:
  - job_name: shop
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:{metrics_port}"]
        labels:
          service_name: checkout
"""


class Traffic:
    """Requests to the service from a background thread: successes on one route, 503s on another."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            for method, path in (("GET", f"/orders/{number}"), ("POST", f"/payments/pay-{number}")):
                request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method, data=b"")
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        response.read()
                except urllib.error.HTTPError as error:
                    error.read()
                except OSError:
                    pass
                self.sent += 1
            self._stop.wait(0.02)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def start_monitoring(tmp_path: Path, processes: Processes, receiver: WebhookReceiver, metrics_port: int) -> None:
    """Prometheus (shipped rules, shortened windows) scraping `metrics_port`, and Alertmanager posting to
    `receiver`; returns once both are ready."""
    prometheus_port, alertmanager_port = free_port(), free_port()
    rule_files = []
    for shipped in RULE_FILES:
        fast = tmp_path / shipped.name
        fast.write_text(fast_rules(shipped.read_text()))
        rule_files.append(fast)
    (tmp_path / "prometheus.yml").write_text(prometheus_config(metrics_port, alertmanager_port, rule_files))
    (tmp_path / "alertmanager.yml").write_text(fast_alertmanager(ALERTMANAGER_CONFIG.read_text(), receiver.url))

    assert ALERTMANAGER is not None and PROMETHEUS is not None
    alertmanager = processes.start(
        "alertmanager",
        [
            ALERTMANAGER,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{alertmanager_port}",
            "--cluster.listen-address=",
        ],
    )
    prometheus = processes.start(
        "prometheus",
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
    )
    wait_ready(f"http://127.0.0.1:{alertmanager_port}/-/ready", alertmanager, processes)
    wait_ready(f"http://127.0.0.1:{prometheus_port}/-/ready", prometheus, processes)


def test_5xx_traffic_notifies_the_webhook_with_service_and_route(
    tmp_path: Path, processes: Processes, receiver: WebhookReceiver
) -> None:
    metrics_port = free_port()
    app_port, metrics_url = start_service(processes, metrics_port)
    start_monitoring(tmp_path, processes, receiver, metrics_port)

    def is_error_alert(alert: dict[str, Any]) -> bool:
        labels = alert.get("labels", {})
        return labels.get("alertname") == "HighErrorRatio" and alert.get("status") == "firing"

    with Traffic(app_port) as traffic:
        alert = receiver.wait_for_alert(is_error_alert, timeout=ALERT_DEADLINE_SECONDS)

    assert alert is not None, (
        f"no HighErrorRatio notification within {ALERT_DEADLINE_SECONDS} s after {traffic.sent} requests; "
        f"payloads: {receiver.payloads}\n{processes.logs()}"
    )
    labels = alert["labels"]
    assert labels["service_name"] == "checkout"
    assert labels["http_route"] == "/payments/<payment_id>"
    assert labels["severity"] == "page"
    assert "checkout /payments/<payment_id>" in alert["annotations"]["summary"]
    # The route with only successes never alerts, and no raw path reaches a label.
    assert not any(
        item.get("labels", {}).get("http_route") == "/orders/<int:order_id>"
        for payload in receiver.payloads
        for item in payload.get("alerts", [])
    )
    assert "pay-" not in json.dumps(receiver.payloads)
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        assert b"pay-" not in response.read()


def test_an_attack_notifies_the_webhook_with_the_security_rule(
    tmp_path: Path, processes: Processes, receiver: WebhookReceiver
) -> None:
    """Command injection against the service: veil's sensor reports VEIL-RT-SPAWN, the counter reaches
    Prometheus, SecurityFinding fires and Alertmanager posts it."""
    metrics_port = free_port()
    app_port, _ = start_service(processes, metrics_port)
    start_monitoring(tmp_path, processes, receiver, metrics_port)
    with urllib.request.urlopen(f"http://127.0.0.1:{app_port}/convert?format=pdf;id", timeout=10) as response:
        assert b"uid=" in response.read()  # detect mode: the injected command ran, and was seen

    def is_security_alert(alert: dict[str, Any]) -> bool:
        labels = alert.get("labels", {})
        return labels.get("alertname") == "SecurityFinding" and alert.get("status") == "firing"

    alert = receiver.wait_for_alert(is_security_alert, timeout=ALERT_DEADLINE_SECONDS)
    assert alert is not None, f"no SecurityFinding notification; payloads: {receiver.payloads}\n{processes.logs()}"
    assert alert["labels"]["rule"] == "VEIL-RT-SPAWN"
    assert alert["labels"]["service_name"] == "checkout"
    assert alert["labels"]["severity"] == "page"
    assert alert["annotations"]["summary"] == "checkout: security rule VEIL-RT-SPAWN fired"
