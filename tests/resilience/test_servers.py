"""Fork safety and sustained load with real servers: gunicorn --preload (veil configured in the master,
before the fork) and uvicorn --workers (spawned workers), exporting over OTLP/HTTP and OTLP/gRPC."""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.request

import pytest

from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation.apps.support import ServerProcess, free_port
from tests.resilience.support import child_env, children_of, pids_of, rss_bytes

WORKERS = 3


def fetch(port: int, path: str = "/") -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        body: bytes = response.read()
        return body


def assert_each_request_once(receiver: OTLPReceiver, served_by: dict[int, int], total: int) -> None:
    spans = receiver.wait_for_spans(total, timeout=15, predicate=lambda span: span.kind == "SERVER")
    time.sleep(0.3)  # a duplicate batch would arrive now
    spans = [span for span in receiver.spans() if span.kind == "SERVER"]
    assert len(spans) == len({span.span_id for span in spans}) == total, receiver.summary()
    assert pids_of(spans) == served_by  # every worker exported exactly the requests it served


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_gunicorn_preload_workers_export_their_own_spans(otlp_receiver: OTLPReceiver, protocol: str) -> None:
    endpoint = otlp_receiver.grpc_endpoint if protocol == "grpc" else otlp_receiver.http_endpoint
    port = free_port()
    server = ServerProcess(
        ["gunicorn", "--preload", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "tests.resilience.apps.wsgi_app:app"],
        port,
        child_env(endpoint, protocol, OTEL_BSP_SCHEDULE_DELAY="30000"),  # only the exit flush exports
    )
    served_by: dict[int, int] = {}
    try:
        for _ in range(60):
            pid = int(fetch(port))
            served_by[pid] = served_by.get(pid, 0) + 1
    finally:
        output = server.stop()  # SIGTERM: workers exit gracefully and flush
    assert server.process.returncode == 0, output
    assert "Traceback" not in output, output
    assert_each_request_once(otlp_receiver, served_by, 60)


def test_uvicorn_workers_export_their_own_spans(otlp_receiver: OTLPReceiver) -> None:
    port = free_port()
    server = ServerProcess(
        [
            "uvicorn",
            "--workers",
            "2",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "tests.resilience.apps.asgi_app:app",
        ],
        port,
        child_env(otlp_receiver.http_endpoint, "http/protobuf"),
    )
    served_by: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (len(served_by) < 2 or sum(served_by.values()) < 40):
            pid = int(fetch(port))
            served_by[pid] = served_by.get(pid, 0) + 1
        total = sum(served_by.values())
        assert_each_request_once(otlp_receiver, served_by, total)
    finally:
        output = server.stop()
    assert "Traceback" not in output, output


def test_sustained_load_loses_nothing_and_memory_stays_flat(otlp_receiver: OTLPReceiver) -> None:
    """12 s of concurrent requests against gunicorn (2 workers x 4 threads) with a healthy collector:
    every request's span arrives once, nothing is dropped or failed, worker RSS stays flat."""
    port = free_port()
    server = ServerProcess(
        [
            "gunicorn", "--preload", "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}",
            "tests.resilience.apps.wsgi_app:app",
        ],
        port,
        child_env(otlp_receiver.http_endpoint, "http/protobuf", OTEL_BSP_SCHEDULE_DELAY="200"),
    )  # fmt: skip
    served = [0] * 4
    stop = threading.Event()

    def client(index: int) -> None:
        while not stop.is_set():
            fetch(port)
            served[index] += 1

    try:
        deadline = time.monotonic() + 10
        while len(children_of(server.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = children_of(server.process.pid)
        assert len(workers) == 2, workers
        threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(4)]
        for thread in threads:
            thread.start()
        samples: dict[int, list[int]] = {pid: [] for pid in workers}
        started = time.monotonic()
        while time.monotonic() - started < 12:
            time.sleep(0.5)
            for pid in workers:
                samples[pid].append(rss_bytes(pid))
        stop.set()
        for thread in threads:
            thread.join(15)
        health = [json.loads(fetch(port, "/health")) for _ in range(6)]
    finally:
        output = server.stop()
    assert "Traceback" not in output, output
    total = sum(served) + len(health)
    assert total > 500, total
    otlp_receiver.wait_for_spans(total, timeout=20, predicate=lambda span: span.kind == "SERVER")
    spans = [span for span in otlp_receiver.spans() if span.kind == "SERVER"]
    assert len(spans) == len({span.span_id for span in spans}) == total
    for report in health:
        assert report["traces"]["dropped"] == report["traces"]["failed"] == 0, report
    for pid, values in samples.items():
        third = max(len(values) // 3, 1)
        early, late = statistics.median(values[:third]), statistics.median(values[-third:])
        assert late - early < 8 * 1024 * 1024, (pid, early, late)
