"""The deliberately vulnerable example under `veil run -- gunicorn`, attacked by a script, all inside a private
network namespace (loopback only; metadata.google.internal answered by a replaced /etc/hosts): every default
rule fires, once per attack, on the attack's own trace; the benign replay and start-up give no finding; block
mode answers 403 and the command never runs."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.security.netns import environment, isolated, require_netns

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

EXPECTED = {
    "command-injection": {"VEIL-RT-SPAWN": True},
    "ssrf-metadata-ip": {"VEIL-RT-METADATA": True},
    "ssrf-metadata-name": {"VEIL-RT-METADATA": True},
    "path-traversal": {"VEIL-RT-TRAVERSAL": True, "VEIL-RT-CREDENTIAL-FILE": True},
    "pickle-eval": {"VEIL-RT-PICKLE": False, "VEIL-RT-EVAL": True},
    "pickle-import": {"VEIL-RT-IMPORT": False},
    "native-library": {"VEIL-RT-DLOPEN": True},
}  # attack -> {rule: marked as correlated with the request's input}


def attack(mode: str, tmp: Path) -> dict[str, Any]:
    require_netns()
    hosts = tmp / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost\n127.0.0.1 metadata.google.internal\n")
    sentinel = tmp / f"sentinel-{mode}"
    argv = isolated([sys.executable, "-m", "tests.security.attack_driver", mode, str(sentinel)], hosts=str(hosts))
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=environment(), timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    report["by_label"] = {item["label"]: item for item in report["requests"]}
    return report


@pytest.fixture(scope="module")
def detect(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return attack("detect", tmp_path_factory.mktemp("detect"))


@pytest.fixture(scope="module")
def block(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return attack("block", tmp_path_factory.mktemp("block"))


@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_each_attack_fires_its_rules_once_on_its_own_trace(detect: dict[str, Any], label: str) -> None:
    item = detect["by_label"][label]
    fired = collections.Counter(finding["rule"] for finding in item["findings"])
    assert fired == collections.Counter(EXPECTED[label].keys()), (label, item, detect["server_output"])
    for finding in item["findings"]:
        assert finding["correlated"] is EXPECTED[label][finding["rule"]], finding
        assert finding["action"] == "detect"
    # the SERVER span of that trace says it carries findings, and which
    assert set(item["span"]["attributes"]["veil.security.rules"]) == set(EXPECTED[label])
    assert item["span"]["attributes"]["veil.security.findings"] >= len(EXPECTED[label])


def test_every_default_rule_is_exercised(detect: dict[str, Any]) -> None:
    from veil.security.rules import load_files

    exercised = {rule for rules in EXPECTED.values() for rule in rules}
    assert exercised == {rule.id for rule in load_files([]).rules}


def test_benign_replay_and_start_up_give_no_finding(detect: dict[str, Any]) -> None:
    benign = [item for item in detect["requests"] if item["label"].startswith("benign-")]
    assert len(benign) == 6
    for item in benign:
        assert item["status"] == 200, item
        assert item["findings"] == [], item
        assert item["span"]["attributes"] == {}, item
    assert detect["startup"] == []
    assert detect["other_traces"] == {}


def test_the_counter_counts_every_finding(detect: dict[str, Any]) -> None:
    counted = collections.Counter(finding["rule"] for item in detect["requests"] for finding in item["findings"])
    assert detect["counters"] == dict(counted)


def test_detect_mode_lets_the_injected_command_run(detect: dict[str, Any]) -> None:
    assert detect["by_label"]["command-injection"]["status"] == 200
    assert detect["sentinel_exists"] is True


def test_block_mode_answers_403_and_the_command_never_runs(block: dict[str, Any]) -> None:
    item = block["by_label"]["command-injection"]
    assert item["status"] == 403 and "blocked by a veil security rule" in item["body"]
    assert block["sentinel_exists"] is False
    assert [(finding["rule"], finding["action"]) for finding in item["findings"]] == [("VEIL-RT-SPAWN", "block")]
    assert item["span"]["attributes"]["veil.security.blocked"] == "VEIL-RT-SPAWN"
    # the other attacks were refused too (the example catches OSError, of which Blocked is one)
    for label in ("ssrf-metadata-ip", "path-traversal", "pickle-eval", "native-library"):
        assert block["by_label"][label]["status"] != 200, label
    for item in block["requests"]:
        if item["label"].startswith("benign-"):
            assert item["status"] == 200 and item["findings"] == [], item
