"""End to end: `python -m examples.shop --otlp-endpoint <receiver>` runs the three services as processes,
and what reaches the OTLP receiver is one trace per request across exactly the three services, with
correct parent/child links between processes, log records carrying the trace ids, and no secret."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.otlp import OTLPReceiver, ReceivedLog, ReceivedSpan
from veil.demo.traffic import SCENARIOS, SECRETS
from veil.redaction.scan import Scanner

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

_RESULT_LINE = re.compile(
    r"^  (?P<name>[a-z0-9 ]+?)\s+POST /checkout -> (?P<status>\d+)\s+trace (?P<trace>[0-9a-f]{32})$"
)


def _demo(*arguments: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.shop", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_run(
    _otlp_receiver_session: OTLPReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.CompletedProcess[str], OTLPReceiver, Path]]:
    """One demo run for the whole module (it takes a few seconds), relayed to the shared receiver."""
    receiver = _otlp_receiver_session
    receiver.clear()
    log_dir = tmp_path_factory.mktemp("demo-logs")
    completed = _demo("--otlp-endpoint", receiver.http_endpoint, "--log-dir", str(log_dir))
    yield completed, receiver, log_dir
    receiver.clear()


def _traces(completed: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """scenario name -> trace id, from the demo's output."""
    found = {}
    for line in completed.stdout.splitlines():
        match = _RESULT_LINE.match(line)
        if match:
            found[match["name"]] = match["trace"]
    return found


def test_demo_succeeds_and_prints_a_tree_per_request(demo_run: Any) -> None:
    completed, _, _ = demo_run
    assert completed.returncode == 0, completed.stdout + completed.stderr
    traces = _traces(completed)
    assert sorted(traces) == sorted(scenario.name for scenario in SCENARIOS)
    assert len(set(traces.values())) == len(SCENARIOS)
    for trace_id in traces.values():
        assert f"trace {trace_id}" in completed.stdout  # the tree's header line
    assert "[REDACTED:payment_card]" in completed.stdout
    assert "http://REDACTED:REDACTED@127.0.0.1:" in completed.stdout
    assert "url.query=token=REDACTED" in completed.stdout
    assert "Relayed " in completed.stdout


def test_one_trace_crosses_exactly_the_three_services(demo_run: Any) -> None:
    completed, receiver, _ = demo_run
    traces = _traces(completed)
    receiver.wait_for_spans(count=20, timeout=10)
    spans = receiver.spans()
    attack = {span.trace_id for span in spans if span.resource["service.name"] == "vulnerable"}
    assert len(attack) == 1  # the demo's attack on examples/vulnerable: one trace of its own
    assert {span.trace_id for span in spans} == set(traces.values()) | attack  # nothing else was exported

    trace = [span for span in spans if span.trace_id == traces["normal order"]]
    assert {span.resource["service.name"] for span in trace} == {"gateway", "inventory", "payments"}
    by_id = {span.span_id: span for span in trace}
    (root,) = [span for span in trace if span.is_root]
    assert (root.resource["service.name"], root.kind, root.name) == ("gateway", "SERVER", "POST /checkout")
    for span in trace:
        if span is not root:
            assert span.parent_span_id in by_id, f"{span.name} has a parent outside the trace"

    def server(service: str, route_prefix: str) -> ReceivedSpan:
        (found,) = [
            span
            for span in trace
            if span.resource["service.name"] == service
            and span.kind == "SERVER"
            and str(span.attributes.get("url.path", "")).startswith(route_prefix)
        ]
        return found

    # Each server span's parent is the client span, in the calling process, that made the request.
    for callee, path, caller in (
        (server("inventory", "/reservations"), "/reservations", "gateway"),
        (server("payments", "/quotes/"), "/quotes/", "inventory"),
        (server("payments", "/charges"), "/charges", "gateway"),
    ):
        parent = by_id[callee.parent_span_id]
        assert parent.kind == "CLIENT"
        assert parent.resource["service.name"] == caller
        assert path in str(parent.attributes["url.full"])
        assert by_id[parent.parent_span_id].resource["service.name"] == caller


def test_the_failing_request_is_an_error_in_every_service(demo_run: Any) -> None:
    completed, receiver, _ = demo_run
    trace_id = _traces(completed)["downstream 500"]
    servers = [span for span in receiver.spans() if span.trace_id == trace_id and span.kind == "SERVER"]
    statuses = {span.resource["service.name"]: span.attributes["http.response.status_code"] for span in servers}
    assert statuses == {"gateway": 502, "inventory": 502, "payments": 500}
    (payments,) = [span for span in servers if span.resource["service.name"] == "payments"]
    assert payments.status_code == "ERROR"
    assert [event.name for event in payments.events] == ["exception"]


def test_log_records_carry_the_trace_ids(demo_run: Any) -> None:
    completed, receiver, _ = demo_run
    traces = _traces(completed)
    receiver.wait_for_logs(count=10, timeout=10)
    shop_logs = [log for log in receiver.logs() if str(log.scope_name).startswith("shop.")]
    assert {log.resource["service.name"] for log in shop_logs} == {"gateway", "inventory", "payments"}
    assert all(log.trace_id in traces.values() for log in shop_logs), [log.body for log in shop_logs]

    trace_id = traces["secrets"]
    (charge_log,) = [log for log in shop_logs if log.trace_id == trace_id and str(log.body).startswith("charging card")]
    (charge_span,) = [
        span
        for span in receiver.spans()
        if span.trace_id == trace_id and span.kind == "SERVER" and span.attributes.get("url.path") == "/charges"
    ]
    assert charge_log.span_id == charge_span.span_id
    assert "[REDACTED:payment_card]" in str(charge_log.body)


def _strings(node: Any, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    if isinstance(node, dict):
        for child_key, value in node.items():
            yield from _strings(value, str(child_key))
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _strings(value, key)
    else:
        yield key, node


def _exported_values(spans: list[ReceivedSpan], logs: list[ReceivedLog]) -> Iterator[tuple[str, str | None, Any]]:
    for span in spans:
        where = f"span {span.name!r} of {span.resource['service.name']}"
        yield where, "span.name", span.name
        yield where, "status.message", span.status_message
        for key, value in _strings({**span.resource, **span.attributes}):
            yield where, key, value
        for event in span.events:
            for key, value in _strings(event.attributes):
                yield f"{where}, event {event.name}", key, value
    for log in logs:
        where = f"log record of {log.resource['service.name']}"
        yield where, None, log.body
        for key, value in _strings({**log.resource, **log.attributes}):
            yield where, key, value


def test_no_secret_sent_by_the_traffic_was_exported(demo_run: Any) -> None:
    completed, receiver, log_dir = demo_run
    assert completed.returncode == 0, completed.stdout + completed.stderr
    requests = receiver.requests()
    assert {request.signal for request in requests} == {"traces", "logs", "metrics"}
    planted = [secret.encode() for secret in SECRETS] + [secret.replace(" ", "").encode() for secret in SECRETS]
    for request in requests:  # the literal secrets, anywhere in any export (attributes, bodies, resources)
        raw = request.message.SerializeToString()
        assert not [secret for secret in planted if secret in raw], f"a planted secret in a {request.signal} export"

    scanner = Scanner()
    leaks = [
        f"{category} at {where} ({key})"
        for where, key, value in _exported_values(receiver.spans(), receiver.logs())
        for category in scanner.scan_value(key, value)
    ]
    assert leaks == []

    # What the demo printed and what the services wrote to their log files holds no secret either.
    outputs = [completed.stdout, completed.stderr] + [path.read_text() for path in sorted(log_dir.glob("*.log"))]
    assert len(outputs) == 6  # stdout, stderr, and the logs of gateway, inventory, payments, vulnerable
    for text in outputs:
        assert not [secret for secret in SECRETS if secret in text or secret.replace(" ", "") in text]


def test_normal_shop_traffic_gives_no_request_security_finding(demo_run: Any) -> None:
    """The request-level attack signals (on by default in every service) stay silent on the shop's traffic."""
    _, receiver, _ = demo_run
    findings = [
        log.attributes.get("security_rule.uuid")
        for log in receiver.logs()
        if log.event_name == "veil.security.finding"
        and str(log.attributes.get("security_rule.uuid", "")).startswith("VEIL-REQ-")
    ]
    assert findings == []


def test_ctrl_c_stops_every_service(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.shop", "--log-dir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ports = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            match = re.match(r"^  (gateway|inventory|payments)\s+(\d+)\s", line)
            if match:
                ports.append(int(match[2]))
            if len(ports) == 3:
                break
        assert len(ports) == 3, "the demo did not list its services"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode in (0, 130), output
    for port in ports:  # every service is gone: nothing listens on its port any more
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    assert _processes_with_port(ports) == []


def _processes_with_port(ports: list[int]) -> list[int]:
    """Live processes (of this user) whose environment says SHOP_PORT is one of `ports` (Linux /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    wanted = {f"SHOP_PORT={port}".encode() for port in ports}
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and wanted.intersection(environment):
            found.append(int(entry.name))
    return found


def test_the_attack_is_shown_inside_its_trace_and_is_the_only_finding(demo_run: Any) -> None:
    completed, receiver, _ = demo_run
    assert completed.returncode == 0, completed.stdout + completed.stderr
    findings = [log for log in receiver.logs() if log.event_name == "veil.security.finding"]
    (finding,) = findings  # the shop's own traffic and every start-up produce none
    assert finding.resource["service.name"] == "vulnerable"
    assert finding.attributes["security_rule.uuid"] == "VEIL-RT-SPAWN"
    assert finding.attributes["veil.security.correlated"] is True
    (server,) = [span for span in receiver.spans() if span.trace_id == finding.trace_id and span.kind == "SERVER"]
    assert [event.name for event in server.events] == ["veil.security.finding"]
    section = completed.stdout.split("== attack:", 1)[1]
    assert finding.trace_id in section.splitlines()[1]
    assert "veil.security.finding  security_rule.uuid=VEIL-RT-SPAWN" in section
    assert "log  vulnerable CRITICAL Process spawned while serving GET /ping" in section
