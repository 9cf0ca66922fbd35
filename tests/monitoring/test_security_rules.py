"""The shipped security alert rules (examples/shop/monitoring/rules/security.yml) validate and behave as their
promtool unit tests say (security-tests.yml); the Alertmanager routing example for security alerts validates
and routes as documented. Skipped locally without the tools, required in CI (VEIL_REQUIRE_PEERS)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.monitoring.support import MONITORING, binary
from tests.peer_required import missing_peer

SECURITY_RULES = MONITORING / "rules" / "security.yml"
SECURITY_TESTS = MONITORING / "rules" / "security-tests.yml"
SECURITY_ROUTING = MONITORING / "alertmanager-security.yml"


def tool(name: str) -> str:
    path = binary(name)
    if path is None:
        missing_peer(name, "apt-get install prometheus prometheus-alertmanager (listed in .ci/apt-packages)")
    assert path is not None
    return path


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_security_rules_are_valid() -> None:
    result = run(tool("promtool"), "check", "rules", str(SECURITY_RULES))
    assert result.returncode == 0 and "3 rules found" in result.stdout, result.stdout + result.stderr


def test_security_rule_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", str(SECURITY_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_would_catch_a_rule_that_misses_new_series(tmp_path: Path) -> None:
    """Without the `unless ... offset 5m` arm, a wave series born at 15 never alerts: the tests must say so."""
    weakened = SECURITY_RULES.read_text().replace(
        'unless veil_security_findings_total{rule="VEIL-REQ-ATTACK-WAVE"} offset 5m',
        'unless veil_security_findings_total{rule="VEIL-REQ-ATTACK-WAVE"}',
    )
    assert weakened != SECURITY_RULES.read_text()
    (tmp_path / "security.yml").write_text(weakened)
    (tmp_path / "security-tests.yml").write_text(SECURITY_TESTS.read_text())
    result = run(tool("promtool"), "test", "rules", str(tmp_path / "security-tests.yml"))
    assert result.returncode != 0 and "SecurityAttackWave" in result.stdout + result.stderr


def test_security_routing_example_is_valid_and_routes_by_team() -> None:
    amtool = tool("amtool")
    result = run(amtool, "check-config", str(SECURITY_ROUTING))
    assert result.returncode == 0 and "3 receivers" in result.stdout, result.stdout + result.stderr
    routes = {
        ("SecurityAttackWave", "page"): "security-pager",
        ("SecurityRequestSignalsHigh", "ticket"): "security-tickets",
    }
    for (alert, severity), receiver in routes.items():
        labels = [f"alertname={alert}", f"severity={severity}", "team=security", "service_name=checkout"]
        routed = run(amtool, "config", "routes", "test", "--config.file", str(SECURITY_ROUTING), *labels)
        assert routed.stdout.strip() == receiver, routed.stdout + routed.stderr
    other = run(
        amtool,
        "config",
        "routes",
        "test",
        "--config.file",
        str(SECURITY_ROUTING),
        "alertname=ServiceDown",
        "severity=page",
    )
    assert other.stdout.strip() == "platform-webhook"
