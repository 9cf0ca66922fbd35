"""Request-level attack signals through veil's real Flask instrumentation (the framework's test client, as
users test): each signal fires on its attack and stays silent on benign neighbours; waves and auth-failure
bursts aggregate into exactly one finding; X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, abort
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import veil
from veil.instrumentation.flask import FlaskInstrumentor
from veil.security import Finding, add_listener
from veil.security import findings as findings_module
from veil.security import signals as signals_module
from veil.security.audit import audit
from veil.security.request import RequestScope
from veil.security.signals import MAX_CLEAN_TARGET_LENGTH, MAX_CLEAN_TARGETS, RequestSignals
from veil.telemetry import reset_for_tests

SPANS: list[InMemorySpanExporter] = []
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0"


def make_app() -> Flask:
    app = Flask("veil_signals")

    @app.route("/")
    def index() -> str:
        return "home"

    @app.route("/items/<int:item>")
    def item(item: int) -> str:
        return f"item {item}"

    @app.route("/search")
    def search() -> str:
        return "results"

    @app.post("/login")
    def login() -> str:
        abort(401)

    @app.post("/login-audited")
    def login_audited() -> str:
        audit("login", actor="mallory-target", outcome="failure")
        abort(401)

    return app


@pytest.fixture
def signals() -> Iterator[Callable[..., tuple[Any, list[Finding]]]]:
    removers: list[Callable[[], None]] = []
    instrumentor = FlaskInstrumentor()

    def start(**settings: Any) -> tuple[Any, list[Finding]]:
        telemetry = veil.configure(force=True, auto_instrument=False, traces_exporter="none", **settings)
        assert telemetry.tracer_provider is not None
        SPANS[:] = [InMemorySpanExporter()]  # a shut-down exporter records nothing: a new one per configuration
        telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS[0]))
        findings_module.reset()
        findings_module.configure_noise(window=0, rate=0, burst=1)  # every finding published as it comes
        found: list[Finding] = []
        removers.append(add_listener(found.append))
        instrumentor.instrument()
        return make_app().test_client(), found

    yield start
    instrumentor.uninstrument()
    for remove in removers:
        remove()
    findings_module.reset()
    reset_for_tests()


def rules(found: list[Finding]) -> list[str]:
    return [finding.rule_id for finding in found]


@pytest.mark.parametrize(
    ("target", "agent", "rule"),
    [
        ("/", "sqlmap/1.8.4#stable (https://sqlmap.org)", "VEIL-REQ-SCANNER"),
        (
            "/",
            "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))",
            "VEIL-REQ-SCANNER",
        ),
        ("/.env", BROWSER, "VEIL-REQ-PROBE"),
        ("/.git/config", BROWSER, "VEIL-REQ-PROBE"),
        ("/wp-admin/setup-config.php", BROWSER, "VEIL-REQ-PROBE"),
        ("/actuator/env", BROWSER, "VEIL-REQ-PROBE"),
        ("/static/backup.sql", BROWSER, "VEIL-REQ-PROBE"),
        ("/search?file=../../../../etc/passwd", BROWSER, "VEIL-REQ-TRAVERSAL"),
        ("/search?file=%252e%252e%252f%252e%252e%252fetc%252fshadow", BROWSER, "VEIL-REQ-TRAVERSAL"),
        ("/search?id=1%27%20OR%20%271%27%3D%271", BROWSER, "VEIL-REQ-SQLI"),
        ("/search?q=1+UNION+ALL+SELECT+password+FROM+users--", BROWSER, "VEIL-REQ-SQLI"),
        ("/search?id=1;DROP TABLE users", BROWSER, "VEIL-REQ-SQLI"),
        ("/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E", BROWSER, "VEIL-REQ-XSS"),
        ("/search?next=javascript:alert(1)", BROWSER, "VEIL-REQ-XSS"),
        ("/search?q=<img src=x onerror=alert(1)>", BROWSER, "VEIL-REQ-XSS"),
    ],
)
def test_each_signal_fires_on_its_attack(signals: Any, target: str, agent: str, rule: str) -> None:
    client, found = signals()
    client.get(target, headers={"User-Agent": agent}, environ_base={"REMOTE_ADDR": "198.51.100.7"}).close()
    assert rule in rules(found), found
    finding = next(item for item in found if item.rule_id == rule)
    assert finding.source == "request" and finding.priority == "NOTICE"
    assert finding.fields["client.address"] == "198.51.100.7"
    assert finding.fields["http.request.method"] == "GET"
    assert finding.reference and finding.technique
    # on the request's own trace: the SERVER span carries the finding as an event and says which rules fired
    (server,) = [span for span in SPANS[0].get_finished_spans() if span.kind.name == "SERVER"]
    context = server.get_span_context()
    assert (finding.trace_id, finding.span_id) == (context.trace_id, context.span_id)
    assert rule in server.attributes["veil.security.rules"]
    assert server.attributes["veil.security.findings"] >= 1
    assert "veil.security.finding" in [event.name for event in server.events]


BENIGN = [
    "/",
    "/items/42",
    "/search?q=coffee+beans&page=2",
    "/search?q=O%27Brien%20%26%20sons",  # an apostrophe in a name
    "/search?q=rock-n-roll&sort=-price",
    "/search?q=select+a+size",  # an English word that is also SQL
    "/search?q=caf%C3%A9%20cr%C3%A8me",
    "/search?email=ann%40example.com&redirect=%2Faccount%2Forders",
    "/.well-known/security.txt",
    "/search?q=1%2B1%3D2",
    "/search?range=(10,20)&note=a;b",
]


def test_benign_requests_produce_no_finding(signals: Any) -> None:
    client, found = signals()
    agents = [BROWSER, "curl/8.5.0", "python-requests/2.32.3", None]
    for index, target in enumerate(BENIGN * 3):
        agent = agents[index % len(agents)]
        client.get(target, headers={"User-Agent": agent} if agent else {})
    assert found == []


def test_malformed_and_oversized_headers(signals: Any) -> None:
    client, found = signals()
    client.get("/", headers={"User-Agent": BROWSER, "X-Padding": "a" * 5000})
    client.get("/", headers={"User-Agent": "tool/1", "X-Trace": "a\x01b"})
    client.get("/" + "a" * 9000, headers={"User-Agent": BROWSER})
    problems = [finding.message for finding in found if finding.rule_id == "VEIL-REQ-HEADER"]
    assert len(problems) == 3, found
    assert "x-padding" in problems[0] and "control character" in problems[1] and "9001" in problems[2]


def test_an_attack_wave_is_one_finding_with_count_and_sample_routes(signals: Any) -> None:
    client, found = signals(security_wave_threshold=15, security_wave_window_seconds=60)
    probes = ["/.env", "/.git/config", "/wp-login.php", "/actuator/env", "/phpmyadmin/index.php"]
    for index in range(40):
        client.get(probes[index % len(probes)], environ_base={"REMOTE_ADDR": "203.0.113.50"})
    client.get("/.env", environ_base={"REMOTE_ADDR": "203.0.113.51"})  # another client: no wave
    waves = [finding for finding in found if finding.rule_id == "VEIL-REQ-ATTACK-WAVE"]
    assert len(waves) == 1, [finding.message for finding in waves]
    (wave,) = waves
    assert wave.count == 15 and wave.priority == "WARNING" and wave.category == "attack-wave"
    assert wave.fields["client.address"] == "203.0.113.50"
    assert set(wave.fields["veil.security.sample_routes"]) == {f"GET {probe}" for probe in probes}
    assert "15 suspicious requests from 203.0.113.50" in wave.message


def test_fewer_suspicious_requests_than_the_threshold_make_no_wave(signals: Any) -> None:
    client, found = signals(security_wave_threshold=15)
    for _ in range(14):
        client.get("/.env", environ_base={"REMOTE_ADDR": "203.0.113.60"})
    assert "VEIL-REQ-ATTACK-WAVE" not in rules(found)


def test_an_auth_failure_burst_is_one_finding_counting_each_request_once(signals: Any) -> None:
    client, found = signals(security_auth_burst_threshold=10)
    for _ in range(9):  # each of these is both a 401 and an audit failure: counted once each
        client.post("/login-audited", environ_base={"REMOTE_ADDR": "192.0.2.10"}).close()
    assert "VEIL-REQ-AUTH-BURST" not in rules(found)
    for _ in range(20):
        client.post("/login", environ_base={"REMOTE_ADDR": "192.0.2.10"}).close()  # the request ends on close
    bursts = [finding for finding in found if finding.rule_id == "VEIL-REQ-AUTH-BURST"]
    assert len(bursts) == 1
    (burst,) = bursts
    assert burst.count == 10 and burst.technique == "T1110" and burst.fields["client.address"] == "192.0.2.10"
    assert burst.fields["veil.security.sample_routes"] == ["POST /login-audited", "POST /login"]


def test_one_user_attacked_from_many_addresses_is_one_burst(signals: Any) -> None:
    client, found = signals(security_auth_burst_threshold=5)
    for index in range(12):
        client.post("/login-audited", environ_base={"REMOTE_ADDR": f"192.0.2.{100 + index}"}).close()
    bursts = [finding for finding in found if finding.rule_id == "VEIL-REQ-AUTH-BURST"]
    assert len(bursts) == 1 and bursts[0].fields["enduser.id"] == "mallory-target"
    assert "for user mallory-target" in bursts[0].message


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(signals: Any) -> None:
    client, found = signals()
    headers = {"X-Forwarded-For": "203.0.113.99", "User-Agent": BROWSER}
    client.get("/.env", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert found[0].fields["client.address"] == "10.0.0.5"  # the client wrote that header itself

    client, found = signals(security_trusted_proxies="10.0.0.0/8")
    forwarded = {"X-Forwarded-For": "198.51.100.1, 203.0.113.99, 10.0.0.9", "User-Agent": BROWSER}
    client.get("/.env", headers=forwarded, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert found[0].fields["client.address"] == "203.0.113.99"  # the first untrusted hop from the right
    client.get("/.git/config", headers=forwarded, environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert found[1].fields["client.address"] == "192.0.2.1"  # not a trusted peer: its header is ignored


def test_signals_can_be_switched_off(signals: Any) -> None:
    client, found = signals(security_signals=False)
    client.get("/.env", headers={"User-Agent": "sqlmap/1.8"})
    assert found == []


def test_a_bad_trusted_proxy_setting_is_a_configuration_error() -> None:
    with pytest.raises(veil.ConfigurationError, match="VEIL_SECURITY_TRUSTED_PROXIES"):
        veil.configure(force=True, auto_instrument=False, security_trusted_proxies="10.0.0.0/33")


def test_remembered_benign_targets_change_no_answer() -> None:
    """A known agent on a target that passed the cheap tests skips them; any other agent on it is still judged."""
    reported: list[Finding] = []
    observer = RequestSignals(report=reported.append)

    def request(target: str, agent: str | None) -> list[str]:
        start = len(reported)
        scope = RequestScope("GET", None, target, "198.51.100.9", {"user-agent": agent or ""}, agent, None)
        observer.on_request_start(scope)
        return [finding.rule_id for finding in reported[start:]]

    for _ in range(3):
        assert request("/items/42?page=2", BROWSER) == []
    assert "/items/42?page=2" in observer._clean_targets
    assert request("/items/42?page=2", "sqlmap/1.8") == ["VEIL-REQ-SCANNER"]  # remembered target, new agent
    assert request("/items/42?page=2", None) == []
    assert request("/items/42?page=2&id=1%27%20OR%20%271%27%3D%271", BROWSER) == ["VEIL-REQ-SQLI"]
    assert request("/.env", BROWSER) == ["VEIL-REQ-PROBE"]
    assert "/.env" not in observer._clean_targets
    long_target = "/items/" + "9" * MAX_CLEAN_TARGET_LENGTH
    assert request(long_target, BROWSER) == []
    assert long_target not in observer._clean_targets  # long targets are not remembered
    for number in range(MAX_CLEAN_TARGETS + 10):
        request(f"/items/{number}", BROWSER)
    assert len(observer._clean_targets) == MAX_CLEAN_TARGETS  # bounded


def test_the_probe_precheck_skips_only_paths_the_probe_expression_cannot_match() -> None:
    for probe in signals_module._PROBES:
        start = re.sub(r"\\(.)", r"\1", probe)[:2]
        assert len(start) == 2 and not set(start) & set("\\()[]?*+|{}^$"), probe  # two literal characters
    paths = ["/", "/a", "/hello/world", "/.env", "/.git", "/.git/config", "/wp-login.php", "/etc/passwd", "/pma/",
             "/backup.tar", "/config.yml", "/.well-known/security.txt.bak", "/_ignition/x", "/x/.env"]  # fmt: skip
    paths += [f"/{start}{tail}" for start in signals_module._PROBE_STARTS for tail in ("", "x", "/")]
    for path in paths:
        full = signals_module._PROBE_PREFIX.match(path) is not None
        prechecked = path[1:3] in signals_module._PROBE_STARTS and full
        assert full == prechecked, path
