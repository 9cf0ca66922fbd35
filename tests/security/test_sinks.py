"""SIEM sinks against real receivers: rsyslog (RFC 5424 over UDP and TCP, CEF), a loopback HTTP receiver for the
generic webhook and Splunk HEC (envelope, token header, retries on 503, nothing lost within the queue bound),
ECS JSON lines checked field by field, and a dead sink that never slows the application down."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

import veil
from tests.peer_required import missing_peer
from veil.errors import ConfigurationError
from veil.security.audit import audit
from veil.security.sinks import base
from veil.telemetry import Telemetry, reset_for_tests

TOKEN = "hec-token-5f1e0c3a-9b2d"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "FIRST_BACKOFF_SECONDS", 0.01)


@pytest.fixture
def configure() -> Iterator[Any]:
    def run(**overrides: Any) -> Telemetry:
        overrides.setdefault("auto_instrument", False)
        overrides.setdefault("traces_exporter", "none")
        overrides.setdefault("service_name", "checkout")
        return veil.configure(force=True, **overrides)

    yield run
    reset_for_tests()


def audit_in_a_span(**attributes: Any) -> tuple[str, str]:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("POST /login") as span:
        audit("login", actor="alice", outcome="failure", **attributes)
        context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


# ------------------------------------------------------------------------------------------- rsyslog


class Rsyslog:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.tcp_port = free_port()
        self.output = directory / "received.log"
        (directory / "work").mkdir()
        config = directory / "rsyslog.conf"
        config.write_text(
            f"""
global(workDirectory="{directory / "work"}")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{self.udp_port}")
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}")
template(name="fields" type="string"
         string="%syslogfacility%|%syslogseverity%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\\n")
*.* action(type="omfile" file="{self.output}" template="fields")
"""
        )
        self.process = subprocess.Popen(
            ["rsyslogd", "-n", "-f", str(config), "-i", str(directory / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.5).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"rsyslogd did not start: {self.process.stderr.read()!r}") from None
                time.sleep(0.05)

    def lines(self) -> list[str]:
        return self.output.read_text().splitlines() if self.output.exists() else []

    def records(self, count: int, after: int = 0, timeout: float = 15.0) -> list[list[str]]:
        """The records received after the first `after` lines, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.lines()[after:]
            if len(lines) >= count:
                return [line.split("|", 6) for line in lines]
            time.sleep(0.05)
        raise AssertionError(f"rsyslog received {len(lines)} of {count} records")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    if shutil.which("rsyslogd") is None:
        missing_peer("rsyslogd", "apt-get install rsyslog (listed in .ci/apt-packages)")
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog"))
    yield server
    server.stop()


def structured(element: str) -> dict[str, str]:
    assert element.startswith("[veil@32473 ") and element.endswith("]"), element
    params: dict[str, str] = {}
    body = element[len("[veil@32473 ") : -1]
    index = 0
    while index < len(body):
        equals = body.index('="', index)
        name = body[index:equals].strip()
        cursor, value = equals + 2, []
        while body[cursor] != '"':
            if body[cursor] == "\\":
                cursor += 1
            value.append(body[cursor])
            cursor += 1
        params[name] = "".join(value)
        index = cursor + 1
    return params


def test_rfc5424_over_udp_and_tcp_arrives_with_structured_data_intact(rsyslog: Rsyslog, configure: Any) -> None:
    before = len(rsyslog.lines())
    telemetry = configure(
        security_sinks=f"syslog+udp://127.0.0.1:{rsyslog.udp_port},syslog+tcp://127.0.0.1:{rsyslog.tcp_port}"
    )
    trace_id, span_id = audit_in_a_span(note='quote " bracket ] backslash \\ end', password="hunter2-secret")
    assert telemetry.force_flush(10_000)
    records = rsyslog.records(2, after=before)
    assert len(records) == 2
    for facility, severity, app, procid, msgid, data, message in records:
        assert (facility, severity, app, procid, msgid) == ("13", "4", "checkout", str(os.getpid()), "audit")
        fields = structured(data)
        assert fields["event.kind"] == "event" and fields["event.action"] == "login"
        assert fields["event.outcome"] == "failure" and fields["event.category"] == "authentication"
        assert fields["trace.id"] == trace_id and fields["span.id"] == span_id
        assert fields["user.id"] == "alice" and fields["service.name"] == "checkout"
        assert fields["veil.audit.note"] == 'quote " bracket ] backslash \\ end'
        assert fields["veil.audit.password"].startswith("[REDACTED")
        assert "hunter2" not in data + message
        assert message.endswith("audit login failure")
    assert telemetry.health().logs.lost == 0


def test_cef_over_syslog_tcp(rsyslog: Rsyslog, configure: Any) -> None:
    before = len(rsyslog.lines())
    telemetry = configure(security_sinks=f"cef+tcp://127.0.0.1:{rsyslog.tcp_port}")
    trace_id, _ = audit_in_a_span(detail="a=b|c")
    assert telemetry.force_flush(10_000)
    ((_facility, _severity, _app, _procid, _msgid, data, message),) = rsyslog.records(1, after=before)
    assert data == "-"
    cef = message.lstrip("\ufeff")
    assert cef.startswith("CEF:0|veil|veil|")
    header = cef.split("|")
    assert header[4:7] == ["audit:login", "audit login failure", "5"]
    extension = header[7]
    assert "act=login" in extension and "outcome=failure" in extension and "suser=alice" in extension
    assert f"cs1Label=traceId cs1={trace_id}" in extension


# ----------------------------------------------------------------------------------- HTTP receiver


class Receiver:
    """A loopback HTTP receiver: records every POST; answers 503 to the first `failures` of them."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.failures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    failing = receiver.failures > 0
                    receiver.failures -= 1 if failing else 0
                    if not failing:
                        receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = 503 if failing else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                if failing:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.server.server_address[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def hec_events(body: bytes) -> list[dict[str, Any]]:
    decoder, index, events = json.JSONDecoder(), 0, []
    while index < len(body):
        event, index = decoder.raw_decode(body.decode(), index)
        events.append(event)
    return events


def test_splunk_hec_envelope_token_and_retries_on_503(receiver: Receiver, configure: Any) -> None:
    receiver.failures = 3
    telemetry = configure(
        security_sinks=f"splunk+http://127.0.0.1:{receiver.port}",
        security_splunk_token=TOKEN,
        security_sink_queue_size=500,
    )
    for index in range(400):
        audit("role.grant", actor=f"admin-{index}", target="user-7", role="owner")
    assert telemetry.force_flush(20_000)
    events = [event for _path, _headers, body in receiver.requests for event in hec_events(body)]
    assert len(events) == 400  # nothing lost within the queue bound, despite three 503 answers
    assert sorted(event["event"]["user"]["id"] for event in events) == sorted(f"admin-{i}" for i in range(400))
    for path, headers, _body in receiver.requests:
        assert path == "/services/collector/event"
        assert headers["authorization"] == f"Splunk {TOKEN}"
        assert headers["content-type"] == "application/json"
    first = events[0]
    assert set(first) == {"time", "host", "source", "sourcetype", "event"}
    assert first["source"] == "veil" and first["sourcetype"] == "veil:security"
    assert abs(first["time"] - time.time()) < 60
    assert first["event"]["event"]["action"] == "role.grant"
    health = telemetry.health().logs
    assert health.lost == 0 and health.exported >= 400


def test_generic_webhook_posts_ecs_arrays_with_configured_headers(receiver: Receiver, configure: Any) -> None:
    telemetry = configure(
        security_sinks=f"webhook+http://127.0.0.1:{receiver.port}/hooks/security?team=sec",
        security_webhook_headers="x-api-key=k-123",
    )
    trace_id, _ = audit_in_a_span()
    assert telemetry.force_flush(10_000)
    ((path, headers, body),) = receiver.requests
    assert path == "/hooks/security?team=sec" and headers["x-api-key"] == "k-123"
    (document,) = json.loads(body)
    assert document["trace"]["id"] == trace_id and document["event"]["outcome"] == "failure"


def test_a_full_queue_drops_and_counts(receiver: Receiver, configure: Any, caplog: pytest.LogCaptureFixture) -> None:
    receiver.failures = 10**6  # the receiver never accepts: every batch fails after its retries
    telemetry = configure(
        security_sinks=f"splunk+http://127.0.0.1:{receiver.port}",
        security_splunk_token=TOKEN,
        security_sink_queue_size=5,
    )
    for _ in range(50):
        audit("login", actor="bob")
    telemetry.force_flush(10_000)
    health = telemetry.health().logs
    assert health.dropped > 0 and health.failed > 0 and health.dropped + health.failed + health.exported >= 50 - 5
    assert TOKEN not in caplog.text  # the failure is reported without the credential


# -------------------------------------------------------------------------------------------- JSON lines

ECS_AUDIT_FIELDS = {
    "@timestamp": str,
    "message": str,
    "event.kind": str,
    "event.category": list,
    "event.type": list,
    "event.action": str,
    "event.outcome": str,
    "event.dataset": str,
    "trace.id": str,
    "span.id": str,
    "user.id": str,
    "service.name": str,
    "veil.audit.target": str,
}


def flat(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            result.update(flat(value, f"{prefix}{key}."))
        else:
            result[f"{prefix}{key}"] = value
    return result


def test_ecs_json_lines_field_by_field(tmp_path: Path, configure: Any) -> None:
    path = tmp_path / "security.jsonl"
    telemetry = configure(security_sinks=f"jsonl:{path}")
    trace_id, span_id = audit_in_a_span()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("admin"):
        audit(
            "document.delete",
            actor="carol",
            target="invoice-9",
            outcome="success",
            api_key="sk_live_abcdefghijklmnop12345678",
        )
    assert telemetry.force_flush(10_000)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    login, delete = (json.loads(line) for line in lines)
    fields = flat(login)
    for name, kind in ECS_AUDIT_FIELDS.items():
        if name == "veil.audit.target":
            continue
        assert isinstance(fields[name], kind), name
    assert fields["event.kind"] == "event" and fields["event.category"] == ["authentication"]
    assert fields["event.type"] == ["start"] and fields["event.dataset"] == "veil.audit"
    assert (fields["trace.id"], fields["span.id"]) == (trace_id, span_id)
    assert time.strptime(fields["@timestamp"][:19], "%Y-%m-%dT%H:%M:%S") and fields["@timestamp"].endswith("Z")
    deleted = flat(delete)
    assert deleted["event.action"] == "document.delete" and deleted["veil.audit.target"] == "invoice-9"
    assert "event.category" not in deleted  # not an authentication action: no guessed category
    assert deleted["veil.audit.api_key"].startswith("[REDACTED")


def test_json_lines_reopen_after_external_rotation_and_rotate_by_size(tmp_path: Path, configure: Any) -> None:
    path = tmp_path / "security.jsonl"
    telemetry = configure(security_sinks=f"jsonl:{path}")
    audit("one")
    assert telemetry.force_flush(5000)
    os.rename(path, tmp_path / "security.jsonl.rotated")  # logrotate's default: rename, then the writer reopens
    audit("two")
    assert telemetry.force_flush(5000)
    assert json.loads(path.read_text())["event"]["action"] == "two"
    assert json.loads((tmp_path / "security.jsonl.rotated").read_text())["event"]["action"] == "one"
    (sink,) = telemetry._security.sinks
    sink.max_bytes = 600
    for index in range(12):
        audit(f"bulk-{index}")
    assert telemetry.force_flush(5000)
    assert (tmp_path / "security.jsonl.1").exists()
    every = [file for file in (path, *tmp_path.glob("security.jsonl.[0-9]*")) if file.exists()]
    actions = [json.loads(line)["event"]["action"] for file in every for line in file.read_text().splitlines()]
    assert sorted(actions) == sorted(["two", *(f"bulk-{index}" for index in range(12))])  # no line cut or lost


def test_json_lines_to_stdout(configure: Any, capsys: pytest.CaptureFixture[str]) -> None:
    telemetry = configure(security_sinks="jsonl")
    audit("logout", actor="dave")
    assert telemetry.force_flush(5000)
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert json.loads(line)["event"]["action"] == "logout"


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("syslog+udp://127.0.0.1", "needs a host and a port"),
        ("syslog+tcp://:514", "needs a host and a port"),
        ("cef+udp://host:70000", "port"),
        ("webhook+https://", "needs a host"),
        ("sylog+tcp://siem:601", "did you mean syslog+tcp?"),
        ("kafka://broker:9092", "unknown sink kind"),
    ],
)
def test_malformed_sinks_fail_configure_with_one_clear_error(value: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        veil.configure(force=True, auto_instrument=False, security_sinks=value)
    assert "VEIL_SECURITY_SINKS" in str(caught.value) and expected in str(caught.value)
    assert veil.telemetry.installed() is None or veil.telemetry.installed().settings.security_sinks != (value,)


def test_malformed_sink_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIL_SECURITY_SINKS", "jsonl,webhook+https://user:secret@/path")
    with pytest.raises(ConfigurationError) as caught:
        veil.configure(force=True, auto_instrument=False)
    assert "VEIL_SECURITY_SINKS" in str(caught.value) and "secret" not in str(caught.value)


def test_splunk_without_a_token_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="VEIL_SECURITY_SPLUNK_TOKEN"):
        veil.configure(force=True, auto_instrument=False, security_sinks="splunk+https://splunk:8088")


def test_credentials_are_not_in_the_repr_of_settings() -> None:
    settings = veil.settings.Settings.load(
        security_sinks="splunk+https://splunk:8088", security_splunk_token=TOKEN, audit_key="k" * 20
    )
    assert TOKEN not in repr(settings) and "k" * 20 not in repr(settings)
    assert replace(settings, security_splunk_token=None).security_splunk_token is None


# ------------------------------------------------------------------------------------- a dead sink


def test_a_dead_sink_never_slows_a_request(receiver: Receiver, configure: Any) -> None:
    """The same 200 requests through veil's Flask instrumentation, each producing a finding (a probe path) and an
    audit event, with a healthy webhook, with one whose port refuses connections and with one that accepts the
    connection and never answers (a black hole): the requests' time stays in the healthy range (generous
    margin), and what the dead sinks could not deliver is counted."""
    from flask import Flask

    from veil.instrumentation.flask import FlaskInstrumentor

    app = Flask("dead_sink")

    @app.route("/<path:anything>")
    def handler(anything: str) -> str:
        audit("download", actor="erin", target=anything)
        return "ok"

    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(50)
    refused = free_port()
    sinks = {
        "healthy": receiver.port,
        "refused": refused,
        "black hole": black_hole.getsockname()[1],
    }
    instrumentor = FlaskInstrumentor()
    try:
        timings = {}
        for name, port in sinks.items():
            telemetry = configure(security_sinks=f"webhook+http://127.0.0.1:{port}/", security_sink_queue_size=50)
            instrumentor.instrument()
            client = app.test_client()
            started = time.perf_counter()
            for index in range(200):
                client.get(f"/backup-{index}.sql").close()
            timings[name] = time.perf_counter() - started
            instrumentor.uninstrument()
            if name != "healthy":
                telemetry.force_flush(2000)
                assert telemetry.health().logs.lost > 0, name  # nothing arrived, and that was counted
            reset_for_tests()
        for name in ("refused", "black hole"):
            assert timings[name] < timings["healthy"] * 3 + 0.5, timings
    finally:
        black_hole.close()


def test_an_exception_in_a_sink_never_reaches_the_caller(configure: Any, tmp_path: Path) -> None:
    telemetry = configure(security_sinks=f"jsonl:{tmp_path / 'missing-dir' / 'x.jsonl'}")
    audit("login", actor="frank")  # the directory does not exist: delivery fails on the sink's thread
    telemetry.force_flush(5000)
    assert telemetry.health().logs.failed >= 1  # (findings held by noise control from earlier tests may join)


# ------------------------------------------------------------------------------------ findings to sinks

ECS_ALERT_FIELDS = {
    "@timestamp": str,
    "message": str,
    "event.kind": str,
    "event.category": list,
    "event.type": list,
    "event.action": str,
    "event.outcome": str,
    "event.severity": int,
    "event.dataset": str,
    "log.level": str,
    "rule.id": str,
    "rule.name": str,
    "rule.category": str,
    "rule.ruleset": str,
    "rule.reference": str,
    "threat.framework": str,
    "threat.technique.id": list,
    "trace.id": str,
    "span.id": str,
    "source.ip": str,
    "user.id": str,
    "url.path": str,
    "http.request.method": str,
    "user_agent.original": str,
    "service.name": str,
    "veil.source": str,
    "veil.count": int,
}


def test_findings_reach_the_sinks_as_ecs_alerts(tmp_path: Path, configure: Any, rsyslog: Rsyslog) -> None:
    from veil.security import Finding, emit
    from veil.security import findings as findings_module

    path = tmp_path / "alerts.jsonl"
    before = len(rsyslog.lines())
    telemetry = configure(security_sinks=f"jsonl:{path},syslog+udp://127.0.0.1:{rsyslog.udp_port}")
    findings_module.reset()
    findings_module.configure_noise(window=0, rate=0, burst=1)
    with trace.get_tracer("test").start_as_current_span("GET /files") as span:
        emit(
            Finding(
                rule_id="VEIL-REQ-TRAVERSAL",
                rule_name="Path traversal marker",
                category="path-traversal",
                priority="NOTICE",
                message="traversal from 198.51.100.4 with api_key=sk_live_abcdefghijklmnop12345678",
                source="request",
                technique="T1190",
                reference="https://veil.dev/security/events/#request-signals",
                fields={
                    "client.address": "198.51.100.4",
                    "enduser.id": "u-17",
                    "url.path": "/files",
                    "http.request.method": "GET",
                    "user_agent.original": "curl/8.5.0",
                    "fd.name": "/srv/../etc/passwd",
                },
            )
        )
        context = span.get_span_context()
    assert telemetry.force_flush(10_000)
    (document,) = [json.loads(line) for line in path.read_text().splitlines()]
    fields = flat(document)
    for name, kind in ECS_ALERT_FIELDS.items():
        assert isinstance(fields.get(name), kind), (name, fields.get(name))
    assert fields["event.kind"] == "alert" and fields["event.category"] == ["intrusion_detection", "web"]
    assert fields["event.type"] == ["indicator"] and fields["event.severity"] == 5 and fields["log.level"] == "notice"
    assert fields["threat.framework"] == "MITRE ATT&CK" and fields["threat.technique.id"] == ["T1190"]
    assert (fields["trace.id"], fields["span.id"]) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert fields["source.ip"] == "198.51.100.4" and fields["user.id"] == "u-17"
    assert fields["veil.fields.fd.name"] == "/srv/../etc/passwd"
    assert "sk_live" not in path.read_text()  # emit() redacted the message before any sink saw it
    ((facility, severity, _app, _pid, msgid, data, _message),) = rsyslog.records(1, after=before)
    assert (facility, severity, msgid) == ("4", "5", "finding")
    assert structured(data)["rule.id"] == "VEIL-REQ-TRAVERSAL"
    findings_module.reset()
