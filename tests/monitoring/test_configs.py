"""The shipped Prometheus and Alertmanager configuration validates with the tools' own checkers, and the
shipped rules behave as documented in promtool's rule unit tests (examples/shop/monitoring/rules/tests.yml).
Skipped when the tools are not installed."""

from __future__ import annotations

import subprocess

import pytest

from tests.monitoring.support import (
    ALERTMANAGER_CONFIG,
    MONITORING,
    PROMETHEUS_CONFIG,
    RULE_FILES,
    binary,
    fast_alertmanager,
    fast_rules,
)

PROMTOOL = binary("promtool")
AMTOOL = binary("amtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (apt-get install prometheus)")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="needs amtool (apt-get install prometheus-alertmanager)")


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@needs_promtool
def test_prometheus_config_and_its_rule_files_are_valid() -> None:
    output = run(str(PROMTOOL), "check", "config", str(PROMETHEUS_CONFIG))
    assert "3 rule files found" in output  # recording, alerts, security


@needs_promtool
def test_rule_files_are_valid() -> None:
    output = run(str(PROMTOOL), "check", "rules", *map(str, RULE_FILES))
    assert "SUCCESS" in output


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    run(str(PROMTOOL), "test", "rules", str(MONITORING / "rules" / "tests.yml"))


@needs_promtool
def test_fast_rules_used_by_the_end_to_end_test_are_still_valid(tmp_path: pytest.TempPathFactory) -> None:
    paths = []
    for shipped in RULE_FILES:
        fast = tmp_path / shipped.name  # type: ignore[operator]
        fast.write_text(fast_rules(shipped.read_text()))
        assert "[5m]" not in fast.read_text() and "for: 5m" not in fast.read_text()
        paths.append(str(fast))
    run(str(PROMTOOL), "check", "rules", *paths)


@needs_amtool
def test_alertmanager_config_is_valid(tmp_path: pytest.TempPathFactory) -> None:
    output = run(str(AMTOOL), "check-config", str(ALERTMANAGER_CONFIG))
    assert "1 receivers" in output
    fast = tmp_path / "alertmanager.yml"  # type: ignore[operator]
    fast.write_text(fast_alertmanager(ALERTMANAGER_CONFIG.read_text(), "http://127.0.0.1:1/alerts"))
    run(str(AMTOOL), "check-config", str(fast))
