"""A Django site with real logins under gunicorn, launched with `veil run`, exporting to the test OTLP receiver
and to an ECS JSON-lines sink: login, failed login and logout become audit events on their request's trace; a
scripted failed-login burst from one address gives exactly one auth-burst finding; a scanner-like burst gives
exactly one attack-wave finding; ordinary browsing gives none. The site sits behind a (simulated) trusted
proxy on 127.0.0.1, so each phase has its own client address in X-Forwarded-For."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.fixtures.otlp import OTLPReceiver

REPOSITORY = Path(__file__).resolve().parents[2]
VEIL = Path(sys.executable).with_name("veil")
GUNICORN = Path(sys.executable).with_name("gunicorn")
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not VEIL.exists() or not (GUNICORN.exists() or shutil.which("gunicorn")), reason="needs gunicorn"
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Site:
    def __init__(self, port: int, sink: Path, receiver: OTLPReceiver) -> None:
        self.port = port
        self.sink = sink
        self.receiver = receiver

    cookie = ""

    def request(self, method: str, path: str, client: str, form: dict[str, str] | None = None) -> int:
        """Send one request as `client` (behind the trusted proxy), keeping the session cookie like a browser."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"X-Forwarded-For": client, "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            cookie = response.getheader("Set-Cookie")
            if cookie:
                self.cookie = cookie.split(";", 1)[0]
            return response.status
        finally:
            connection.close()

    def documents(self) -> list[dict[str, Any]]:
        if not self.sink.exists():
            return []
        return [json.loads(line) for line in self.sink.read_text().splitlines() if line.strip()]

    def findings(self, rule: str | None = None) -> list[dict[str, Any]]:
        return [
            document
            for document in self.documents()
            if document["event"]["kind"] == "alert" and (rule is None or document["rule"]["id"] == rule)
        ]

    def wait_for(self, rule: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.findings(rule)
            if found:
                time.sleep(1.0)  # long enough for a second one to show, if there were one
                return self.findings(rule)
            time.sleep(0.1)
        raise AssertionError(f"no {rule} finding; sink has {[d['event'].get('action') for d in self.documents()]}")


@pytest.fixture(scope="module")
def site(_otlp_receiver_session: OTLPReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("django-login")
    port = free_port()
    sink = directory / "security.jsonl"
    env = dict(os.environ)
    env.update(
        {
            "OTEL_SERVICE_NAME": "accounts",
            "OTEL_EXPORTER_OTLP_ENDPOINT": _otlp_receiver_session.http_endpoint,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            "VEIL_SECURITY_SINKS": f"jsonl:{sink}",
            "VEIL_SECURITY_TRUSTED_PROXIES": "127.0.0.1",
            "LOGIN_DB": str(directory / "login.sqlite3"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")])),
        }
    )
    command = [str(VEIL), "run", "--", str(GUNICORN), "-w", "1", "-b", f"127.0.0.1:{port}"]
    command.append("tests.security.apps.django_login:application")
    log_path = directory / "gunicorn.log"
    log = log_path.open("wb")
    server = subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=log, stderr=log, start_new_session=True)
    running = Site(port, sink, _otlp_receiver_session)
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if running.request("GET", "/products/1/", "198.51.100.200") == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        yield running
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


def test_logins_and_logouts_are_audit_events_on_their_request_traces(site: Site) -> None:
    receiver = site.receiver
    client = "198.51.100.1"
    assert site.request("POST", "/login/", client, {"username": "alice", "password": "correct-horse"}) == 200
    assert site.request("POST", "/login/", client, {"username": "alice", "password": "wrong"}) == 401
    assert site.request("POST", "/logout/", client) == 200
    logs = receiver.wait_for_logs(
        3,
        timeout=20,
        predicate=lambda log: log.event_name == "veil.audit" and log.attributes.get("client.address") == client,
    )
    seen = sorted((log.attributes["veil.audit.action"], log.attributes["veil.audit.outcome"]) for log in logs)
    assert seen == [("login", "failure"), ("login", "success"), ("logout", "success")]
    spans = receiver.wait_for_spans(3, timeout=20, predicate=lambda span: span.kind == "SERVER" and "log" in span.name)
    server_traces = {span.trace_id for span in spans}
    for log in logs:
        assert log.trace_id in server_traces and log.span_id, log  # on the request's own trace
        assert log.attributes["enduser.id"] == "alice"
        assert log.attributes["veil.audit.framework"] == "django"
        assert log.attributes["url.path"] in ("/login/", "/logout/")
        assert "correct-horse" not in str(log.attributes)
    documents = [
        d for d in site.documents() if d["event"]["kind"] == "event" and d.get("source", {}).get("ip") == client
    ]
    assert len(documents) == 3 and all(document["trace"]["id"] in server_traces for document in documents)


def test_a_failed_login_burst_from_one_address_is_exactly_one_finding(site: Site) -> None:
    attacker = "203.0.113.7"
    for index in range(25):  # credential stuffing: many users, one address, every attempt a 401
        form = {"username": f"user{index}@example.com", "password": f"guess-{index}"}
        assert site.request("POST", "/login/", attacker, form) == 401
    (finding,) = site.wait_for("VEIL-REQ-AUTH-BURST")
    assert finding["source"]["ip"] == attacker and finding["veil"]["count"] == 10
    assert finding["threat"]["technique"]["id"] == ["T1110"]
    assert finding["event"]["category"] == ["intrusion_detection", "authentication"]
    assert "guess-" not in json.dumps(finding)
    logs = site.receiver.wait_for_logs(
        1, timeout=20, predicate=lambda log: log.attributes.get("security_rule.uuid") == "VEIL-REQ-AUTH-BURST"
    )
    assert len(logs) == 1


def test_a_scanner_burst_is_exactly_one_attack_wave(site: Site) -> None:
    scanner = "192.0.2.66"
    probes = ["/.env", "/.git/config", "/wp-login.php", "/actuator/env", "/phpmyadmin/", "/server-status"]
    for index in range(40):
        site.request("GET", probes[index % len(probes)], scanner)
    (wave,) = site.wait_for("VEIL-REQ-ATTACK-WAVE")
    assert wave["source"]["ip"] == scanner and wave["veil"]["count"] == 15
    assert set(wave["veil"]["fields"]["veil.security.sample_routes"]) == {f"GET {probe}" for probe in probes}
    assert not [d for d in site.findings("VEIL-REQ-AUTH-BURST") if d["source"]["ip"] == scanner]
    # the wave is on the trace of the request that completed it, whose SERVER span says so
    (span,) = site.receiver.wait_for_spans(1, timeout=20, predicate=lambda span: span.trace_id == wave["trace"]["id"])
    assert span.kind == "SERVER" and "VEIL-REQ-ATTACK-WAVE" in span.attributes["veil.security.rules"]


def test_ordinary_browsing_gives_no_finding(site: Site) -> None:
    shopper = "198.51.100.20"
    for product in range(40):
        assert site.request("GET", f"/products/{product}/", shopper) == 200
    assert site.request("POST", "/login/", shopper, {"username": "alice", "password": "correct-horse"}) == 200
    assert site.request("POST", "/login/", shopper, {"username": "alice", "password": "typo"}) == 401
    assert site.request("POST", "/login/", shopper, {"username": "alice", "password": "correct-horse"}) == 200
    time.sleep(1.0)
    assert [d for d in site.findings() if d.get("source", {}).get("ip") == shopper] == []
