"""Running veil in child processes (plain scripts, gunicorn, uvicorn) against the test receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.otlp import ReceivedSpan

ROOT = Path(__file__).resolve().parents[2]


def child_env(endpoint: str, protocol: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "OTEL_SERVICE_NAME": "resilience",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    env.update(extra)
    return env


def run_script(module: str, *args: str, env: dict[str, str], timeout: float = 60) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def pids_of(spans: list[ReceivedSpan]) -> dict[int, int]:
    """Spans per `test.pid` attribute."""
    counts: dict[int, int] = {}
    for span in spans:
        pid = span.attributes.get("test.pid")
        if isinstance(pid, int):
            counts[pid] = counts.get(pid, 0) + 1
    return counts


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
            return [int(item) for item in children.read().split()]
    except OSError:
        return []
