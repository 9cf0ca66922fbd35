"""Exit with a dead collector is prompt: a refused connection or a name that does not resolve is known at once,
so the exit flush fails at once instead of backing off until VEIL_SHUTDOWN_TIMEOUT (5 s by default). The bound
itself, for a collector that black-holes, is tested in test_bounds.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from tests.instrumentation.apps.support import free_port
from tests.peer_required import missing_peer
from tests.resilience.support import ROOT, child_env

SHUTDOWN_TIMEOUT_SECONDS = 5.0  # the default VEIL_SHUTDOWN_TIMEOUT


def run_to_exit(argv: list[str], endpoint: str, protocol: str, batch_delay_ms: str) -> tuple[float, str, int]:
    """Run the app; return the seconds from its last statement to its exit, its output and return code."""
    env = child_env(
        endpoint,
        protocol,
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_BSP_SCHEDULE_DELAY=batch_delay_ms,
        OTEL_BLRP_SCHEDULE_DELAY=batch_delay_ms,
    )
    env.pop("VEIL_SHUTDOWN_TIMEOUT", None)
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    last_statement = None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("exiting "):
            last_statement = time.monotonic()
            break
    output = "".join(lines) + process.communicate(timeout=60)[0]
    exited = time.monotonic()
    assert last_statement is not None, output
    return exited - last_statement, output, process.returncode


APP = [sys.executable, "-m", "tests.resilience.apps.dead_collector_app"]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize(
    ("batch_delay_ms", "run_seconds"),
    [("600000", "0"), ("100", "1.5")],
    ids=["only-the-exit-flush", "exports-backing-off-at-exit"],
)
def test_exit_with_a_refused_endpoint_is_prompt(protocol: str, batch_delay_ms: str, run_seconds: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens: connections are refused
    took, output, code = run_to_exit([*APP, run_seconds], endpoint, protocol, batch_delay_ms)
    assert code == 0, output
    assert took < SHUTDOWN_TIMEOUT_SECONDS / 2, (took, output)
    assert "Traceback" not in output, output


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_exit_with_an_endpoint_that_does_not_resolve_is_prompt(protocol: str) -> None:
    """In a network namespace of its own (only loopback), so the lookup never leaves the machine."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        missing_peer("unshare and ip (util-linux, iproute2)", "apt-get install util-linux iproute2")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        missing_peer("a private network namespace (unshare -n)", "run the tests as root")
    isolated = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *APP, "0"]
    took, output, code = run_to_exit(isolated, "http://collector.invalid:4318", protocol, "600000")
    assert code == 0, output
    assert took < SHUTDOWN_TIMEOUT_SECONDS / 2, (took, output)
