"""Several workers under real gunicorn, launched with `veil run`: the launcher configures veil in the master
before it forks, so the master keeps the first port and each worker binds the next free one."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.monitoring.support import REPOSITORY, free_port

WORKERS = 2
VEIL = Path(sys.executable).with_name("veil")
GUNICORN = Path(sys.executable).with_name("gunicorn")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not VEIL.exists() or not (GUNICORN.exists() or shutil.which("gunicorn")), reason="needs veil and gunicorn"
    ),
]


def consecutive_free_ports(count: int) -> int:
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                sockets.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()
    pytest.fail("no range of free ports found")


def request_counts(url: str) -> float | None:
    """Sum of http.server.request.duration counts served at `url`; None when nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "http_server_request_duration_seconds":
            total += sum(sample.value for sample in family.samples if sample.name.endswith("_count"))
    return total


def test_master_and_each_worker_serve_their_own_port(tmp_path: Path) -> None:
    app_port = free_port()
    metrics_port = consecutive_free_ports(WORKERS + 1)
    env = dict(os.environ)
    env.update(
        {
            "OTEL_SERVICE_NAME": "checkout",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
            "VEIL_PROMETHEUS_WORKER_PORTS": str(WORKERS + 1),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")])),
        }
    )
    command = [str(VEIL), "run", "--", str(GUNICORN), "-w", str(WORKERS), "-b", f"127.0.0.1:{app_port}"]
    command.append("tests.monitoring.shop_app:make_app()")
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=log, stderr=log, start_new_session=True)
    urls = [f"http://127.0.0.1:{port}/metrics" for port in range(metrics_port, metrics_port + WORKERS + 1)]
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(request_counts(url) is None for url in urls):
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.2)
        counts = [request_counts(url) for url in urls]
        assert None not in counts, f"{counts}\n{(tmp_path / 'gunicorn.log').read_text()}"

        sent = 20
        for number in range(sent):
            with urllib.request.urlopen(f"http://127.0.0.1:{app_port}/orders/{number}", timeout=5) as response:
                assert response.status == 200
        counts = [request_counts(url) for url in urls]
        # The master serves no requests; together the workers count every one, none twice.
        assert counts[0] == 0
        assert sum(count or 0 for count in counts[1:]) == sent
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)
