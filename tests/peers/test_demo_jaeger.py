"""`veil demo --jaeger` with a real Jaeger binary: the shop's three services export to the Jaeger the demo
starts; one trace crosses all three; Jaeger's dependencies endpoint draws gateway -> inventory -> payments;
the trace pictured in docs/demo.md has the same services and spans; Ctrl-C (and --exit) leave nothing running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.peer_required import missing_peer
from tests.peers.otlp_json import StoredSpan, wait_for_spans
from tests.peers.servers import BUILD_HINT, ROOT, get_json, jaeger_binary, versions, wait_for
from veil.demo.traffic import SCENARIOS, SECRETS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# What the screenshot script (docs/images/make_jaeger_screenshot.py) saw in the pictured trace.
PICTURE = ROOT / "docs" / "images" / "demo-jaeger-trace.json"
_UI_LINE = re.compile(r"Jaeger UI and query API: (?P<url>http://127\.0\.0\.1:\d+)")
_RESULT_LINE = re.compile(
    r"^  (?P<name>[a-z0-9 ]+?)\s+POST /checkout -> (?P<status>\d+)\s+trace (?P<trace>[0-9a-f]{32})$"
)
_WAITING = "press Ctrl-C to stop it"


@dataclass
class DemoRun:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ui: str = ""
    traces: dict[str, str] = field(default_factory=dict)

    def read_until(self, marker: str, timeout: float) -> None:
        """Read the demo's output until a line containing `marker` (fails on exit or timeout)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                pytest.fail("the demo ended early:\n" + "".join(self.lines), pytrace=False)
            self.lines.append(line)
            if match := _UI_LINE.search(line):
                self.ui = match["url"]
            if match := _RESULT_LINE.match(line.rstrip("\n")):
                self.traces[match["name"]] = match["trace"]
            if marker in line:
                return
        pytest.fail(f"no {marker!r} within {timeout:g} s:\n" + "".join(self.lines), pytrace=False)


def _demo_command(binary: Path, log_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "veil.cli",
        "demo",
        "--jaeger",
        "--jaeger-binary",
        str(binary),
        "--log-dir",
        str(log_dir),
        *extra,
    ]


def _binary() -> Path:
    binary = jaeger_binary()
    if binary is None:
        missing_peer(f"Jaeger {versions()['JAEGER_VERSION']}", BUILD_HINT)
    assert binary is not None
    return binary


def _answers(url: str) -> bool:
    try:
        get_json(url)
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """One `veil demo --jaeger` for the module, waiting for Ctrl-C once the traffic is done."""
    log_dir = tmp_path_factory.mktemp("demo-jaeger")
    process = subprocess.Popen(
        _demo_command(_binary(), log_dir),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_"))},
    )
    run = DemoRun(process)
    try:
        run.read_until(_WAITING, timeout=150)
        yield run
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _service(span: StoredSpan) -> str:
    return str(span.resource["service.name"])


def test_the_demo_prints_jaeger_and_one_link_per_trace(demo: DemoRun) -> None:
    output = "".join(demo.lines)
    assert demo.ui, output
    assert sorted(demo.traces) == sorted(scenario.name for scenario in SCENARIOS)
    for trace_id in demo.traces.values():
        assert f"{demo.ui}/trace/{trace_id}" in output
    assert f"{demo.ui}/dependencies" in output


def test_one_trace_in_jaeger_crosses_the_three_services(demo: DemoRun) -> None:
    spans = wait_for_spans(demo.ui, demo.traces["normal order"], 7)
    assert len(spans) == 7
    assert {_service(span) for span in spans.values()} == {"gateway", "inventory", "payments"}
    roots = [span for span in spans.values() if not span.span.get("parentSpanId")]
    assert [(_service(root), root.span["name"]) for root in roots] == [("gateway", "POST /checkout")]
    for span in spans.values():
        parent_id = span.span.get("parentSpanId")
        if not parent_id:
            continue
        parent = spans[parent_id]
        if _service(parent) != _service(span):  # a process boundary: a CLIENT span calls a SERVER span
            assert (parent.span["kind"], span.span["kind"]) == (3, 2)


def test_jaegers_dependencies_show_gateway_inventory_payments(demo: DemoRun) -> None:
    for trace_id in demo.traces.values():
        wait_for_spans(demo.ui, trace_id, 1)
    now_ms = int(time.time() * 1000)
    dependencies = wait_for(
        lambda: get_json(f"{demo.ui}/api/dependencies?endTs={now_ms + 60_000}&lookback=3600000")["data"], 10
    )
    calls = {(link["parent"], link["child"]): link["callCount"] for link in dependencies}
    between_services = {pair for pair in calls if pair[0] != pair[1]}
    assert between_services == {("gateway", "inventory"), ("inventory", "payments"), ("gateway", "payments")}, calls
    # Jaeger's in-memory store also counts a service's own server -> client spans as a self-edge.
    assert {pair for pair in calls if pair[0] == pair[1]} <= {("gateway", "gateway"), ("inventory", "inventory")}
    assert all(count >= 1 for count in calls.values())


def test_the_pictured_trace_has_every_service_and_span_the_picture_shows(demo: DemoRun) -> None:
    """docs/demo.md's screenshot came from a real run; this run's same trace, read from the API the UI reads
    (/api/traces/{id}), has exactly the services and spans the picture shows."""
    picture: dict[str, Any] = json.loads(PICTURE.read_text())
    trace_id = demo.traces[picture["scenario"]]
    wait_for_spans(demo.ui, trace_id, len(picture["spans"]))
    (trace,) = get_json(f"{demo.ui}/api/traces/{trace_id}")["data"]
    services = {key: process["serviceName"] for key, process in trace["processes"].items()}
    shown = sorted([services[span["processID"]], span["operationName"]] for span in trace["spans"])
    assert shown == sorted(picture["spans"])
    assert sorted(set(services.values())) == sorted(picture["services"])


def test_no_secret_of_the_traffic_reached_jaeger(demo: DemoRun) -> None:
    served = "".join(json.dumps(get_json(f"{demo.ui}/api/traces/{trace_id}")) for trace_id in demo.traces.values())
    assert "REDACTED" in served
    assert not [secret for secret in SECRETS if secret in served]


def test_ctrl_c_stops_the_demo_and_jaeger(demo: DemoRun) -> None:
    assert _answers(f"{demo.ui}/api/services")
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(30) == 0, "".join(demo.lines)
    assert not _answers(f"{demo.ui}/api/services")  # Jaeger is gone with the demo


def test_exit_runs_the_demo_and_stops_jaeger(tmp_path: Path) -> None:
    completed = subprocess.run(
        _demo_command(_binary(), tmp_path, "--exit"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    match = _UI_LINE.search(completed.stdout)
    assert match, completed.stdout
    assert _WAITING not in completed.stdout
    assert f"{match['url']}/trace/" in completed.stdout
    assert not _answers(f"{match['url']}/api/services")
