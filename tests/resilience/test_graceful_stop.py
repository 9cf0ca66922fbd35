"""A graceful stop flushes: real servers stopped the way Kubernetes stops a pod (SIGTERM, then SIGKILL after a
grace period) deliver every span, metric point and log record they made, with batch and metric intervals long
enough that only the exit flush can send anything, and exit exactly as they do without veil."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import pytest

from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation.apps.support import free_port
from tests.resilience.support import ROOT

REQUESTS = 6
GRACE_SECONDS = 15.0  # Kubernetes' default terminationGracePeriodSeconds is 30; VEIL_SHUTDOWN_TIMEOUT is 5
DURATION = "http.server.request.duration"


@dataclass(frozen=True)
class Server:
    name: str
    argv: tuple[str, ...]  # "{port}" becomes the port; argv[0] is a module run with `python -m`
    env: tuple[tuple[str, str], ...] = ()
    launcher: bool = False  # started under `veil run`


BIND = "127.0.0.1:{port}"
ASGI = "tests.resilience.apps.stop_app:asgi"
WSGI = "tests.resilience.apps.stop_app:wsgi"
SERVERS = [
    Server("uvicorn", ("uvicorn", "--port", "{port}", "--log-level", "warning", ASGI)),
    Server("uvicorn-workers", ("uvicorn", "--workers", "2", "--port", "{port}", "--log-level", "warning", ASGI)),
    Server("gunicorn-sync", ("gunicorn", "-w", "2", "-b", BIND, WSGI)),
    Server("gunicorn-gthread", ("gunicorn", "-w", "2", "-k", "gthread", "--threads", "2", "-b", BIND, WSGI)),
    Server("gunicorn-uvicorn", ("gunicorn", "-w", "2", "-k", "uvicorn.workers.UvicornWorker", "-b", BIND, ASGI)),
    Server("hypercorn", ("hypercorn", "-b", BIND, ASGI)),
    Server(
        "django-runserver",
        ("django", "runserver", "--noreload", "127.0.0.1:{port}"),
        (("DJANGO_SETTINGS_MODULE", "tests.resilience.apps.stop_django_settings"),),
    ),
    Server("veil-run-uvicorn", ("uvicorn", "--port", "{port}", "--log-level", "warning", ASGI), launcher=True),
]  # fmt: skip


def environment(endpoint: str, with_veil: bool, server: Server | None) -> dict[str, str]:
    bin_dir = os.path.dirname(sys.executable)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "STOP_APP_VEIL": "1" if with_veil else "0",
        "OTEL_SERVICE_NAME": "graceful-stop",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        # Only the exit flush can export anything.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        "OTEL_BLRP_SCHEDULE_DELAY": "600000",
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        "VEIL_RUNTIME_METRICS": "false",
        "VEIL_STARTUP_REPORT": "false",
    }
    if server is not None:
        env.update(server.env)
        if server.launcher:
            env["STOP_APP_CONFIGURE"] = "0"
    return env


def command(server: Server, port: int, with_veil: bool) -> list[str]:
    argv = [part.format(port=port) for part in server.argv]
    if server.launcher and with_veil:
        return [sys.executable, "-m", "veil.cli", "run", "--", *argv]
    return [sys.executable, "-m", *argv]


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_port(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{output_of(process)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"server did not start:\n{output_of(process)}")


def output_of(process: subprocess.Popen[bytes]) -> str:
    return process.stdout.read().decode(errors="replace") if process.stdout else ""


def stop_like_kubernetes(process: subprocess.Popen[bytes], sig: int) -> tuple[int, bool, str]:
    """Send `sig`, wait the grace period, then SIGKILL. (return code, whether SIGKILL was needed, output)."""
    process.send_signal(sig)
    try:
        process.wait(GRACE_SECONDS)
        killed = False
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        killed = True
    return process.returncode, killed, output_of(process)


def started(server: Server, endpoint: str, with_veil: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    return start(command(server, port, with_veil), environment(endpoint, with_veil, server)), port


def serve_and_stop(server: Server, endpoint: str, sig: int) -> tuple[tuple[int, bool, str], tuple[int, str]]:
    """Run `server` with veil and, side by side, without veil (the same requests); stop both with `sig`.

    Returns the stop of the one with veil, and the return code and output of the one without."""
    with_veil, port = started(server, endpoint, with_veil=True)
    without_veil, bare_port = started(server, endpoint, with_veil=False)
    try:
        wait_for_port(with_veil, port)
        wait_for_port(without_veil, bare_port)
        for _ in range(REQUESTS):
            for target in (port, bare_port):
                with urllib.request.urlopen(f"http://127.0.0.1:{target}/", timeout=10) as response:
                    assert response.status == 200
        time.sleep(0.2)  # uvicorn logs and ends the span after the response is sent
    except BaseException:
        with_veil.kill()
        without_veil.kill()
        raise
    without_veil.send_signal(sig)
    stopped = stop_like_kubernetes(with_veil, sig)
    bare_code, bare_killed, bare_output = stop_like_kubernetes(without_veil, sig)
    assert not bare_killed, bare_output
    return stopped, (bare_code, bare_output)


def bare_exit(server: Server, endpoint: str, sig: int) -> tuple[int, str]:
    """The return code and output of `server` without veil, served and stopped alone the same way."""
    process, port = started(server, endpoint, with_veil=False)
    try:
        wait_for_port(process, port)
        for _ in range(REQUESTS):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
                assert response.status == 200
        time.sleep(0.2)
    except BaseException:
        process.kill()
        raise
    code, killed, output = stop_like_kubernetes(process, sig)
    assert not killed, output
    return code, output


def assert_exits_as_without_veil(
    server: Server, endpoint: str, sig: int, stopped: tuple[int, str], bare: tuple[int, str]
) -> None:
    """veil's process exits with the code the same server gives without veil. The veil-free reference is an
    oracle with its own races (uvicorn's multi-process supervisor, on a loaded machine, has been seen dying by
    SIGTERM about once in ten stops): when the two differ, the reference alone is sampled twice more, and veil's
    code must be one the server really gives without veil."""
    code, output = stopped
    seen = [bare]
    if code != bare[0]:
        seen += [bare_exit(server, endpoint, sig) for _ in range(2)]
    assert code in {each[0] for each in seen}, (code, output, seen)


def assert_everything_arrived(receiver: OTLPReceiver, expected: int, output: str) -> None:
    spans = receiver.wait_for_spans(expected, timeout=5, predicate=lambda span: span.kind == "SERVER")
    assert len(spans) == expected, output
    logs = receiver.wait_for_logs(expected, timeout=5, predicate=lambda log: str(log.body).startswith("served by"))
    assert len(logs) == expected, output
    receiver.wait_for_metric(DURATION, timeout=5)
    points = [point for metric in receiver.metrics(DURATION) for point in metric.points]
    assert sum(point.count or 0 for point in points) == expected, (points, output)


@pytest.mark.parametrize("server", SERVERS, ids=[server.name for server in SERVERS])
def test_sigterm_flushes_every_signal_and_exits_as_without_veil(otlp_receiver: OTLPReceiver, server: Server) -> None:
    endpoint = otlp_receiver.http_endpoint
    (code, killed, output), without_veil = serve_and_stop(server, endpoint, signal.SIGTERM)
    assert not killed, f"still running {GRACE_SECONDS} s after SIGTERM:\n{output}"
    assert_exits_as_without_veil(server, endpoint, signal.SIGTERM, (code, output), without_veil)
    assert_everything_arrived(otlp_receiver, REQUESTS, output)
    assert "Traceback" not in output, output


# Gunicorn with uvicorn workers is left out: on SIGINT its workers hang until the arbiter kills them after
# its 30 s graceful timeout, with or without veil.
SIGINT_SERVERS = [server for server in SERVERS if server.name in {"uvicorn", "uvicorn-workers"}]


@pytest.mark.parametrize("server", SIGINT_SERVERS, ids=[server.name for server in SIGINT_SERVERS])
def test_sigint_flushes_and_exits_as_without_veil(otlp_receiver: OTLPReceiver, server: Server) -> None:
    endpoint = otlp_receiver.http_endpoint
    (code, killed, output), without_veil = serve_and_stop(server, endpoint, signal.SIGINT)
    assert not killed, output
    assert_exits_as_without_veil(server, endpoint, signal.SIGINT, (code, output), without_veil)
    assert_everything_arrived(otlp_receiver, REQUESTS, output)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_plain_script_flushes_when_stopped(otlp_receiver: OTLPReceiver, sig: int) -> None:
    """A script with no signal handling of its own dies by SIGTERM (or KeyboardInterrupt) as before, after
    flushing."""

    processes = [
        start(
            [sys.executable, "-m", "tests.resilience.apps.stop_app", str(REQUESTS)],
            environment(otlp_receiver.http_endpoint, with_veil, None),
        )
        for with_veil in (True, False)
    ]
    for process in processes:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line == b"ready\n", line + process.stdout.read()
    processes[1].send_signal(sig)
    code, killed, output = stop_like_kubernetes(processes[0], sig)
    assert not killed, output
    without_veil, killed, bare_output = stop_like_kubernetes(processes[1], sig)
    assert not killed, bare_output
    assert code == without_veil == -sig, output
    spans = otlp_receiver.wait_for_spans(REQUESTS, timeout=5)
    assert len(spans) == REQUESTS, output
    logs = otlp_receiver.wait_for_logs(REQUESTS, timeout=5)
    assert len(logs) == REQUESTS, output
