"""The sensor's `open` prefilter never hides a finding: a name it rejects matches no rule in the full evaluation.

Each name is judged twice: by the prefilter, and by every rule on `open` evaluated in full on the event's fields,
as favourably as a request could make them (inside a request, the name correlated with the request's input).
Names come from the sensor's attack cases, benign and malicious lists, and hypothesis; rules from the default pack
and from a file whose conditions take every shape the prefilter reads (or none it can read).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veil.security import rules as rules_module
from veil.security import sensor
from veil.security.events import Event, extract
from veil.security.prefilter import open_prefilter
from veil.security.rules import Rule, RuleSet, load_files, load_text, python_rule

MALICIOUS = [
    "/etc/passwd",
    "/etc/shadow",
    "/proc/self/environ",
    "/proc/1234/environ",
    "/proc/self/cmdline",
    "/srv/app/.env",
    "/home/app/.ssh/id_ed25519",
    "/home/app/.ssh/known_hosts",
    "/root/.aws/credentials",
    "/srv/tls/server.key",
    "/etc/letsencrypt/live/x/privkey.pem",
    "/srv/keys/my-private.pem",
    "/srv/files/../../etc/passwd",
    "files/sub/../report.txt",  # the sensor case's traversal, relative
    "../../../../etc/passwd",
    "~/.netrc",
    "/etc//shadow",
    "/etc/./passwd",
    "/srv/app/config.json.key",
]
BENIGN = [
    "/tmp/tmpabcdef",
    "/srv/app/templates/index.html",
    "/usr/lib/python3.11/json/__init__.py",
    "/etc/hostname",  # the sensor case's benign neighbour
    "/srv/app/static/app.css",
    "/srv/certs/chain.pem",  # a .pem that is neither privkey* nor *private*
    "/srv/app/.envrc",
    "/srv/app/b.env",
    "relative/file.txt",
    "/",
    "",
]
CUSTOM = """
- rule: Glob on a name
  id: C-GLOB
  condition: evt.name = open and fd.name glob "*.sqlite"
  output: o
  priority: NOTICE
- rule: Negated
  id: C-NOT
  condition: evt.name = open and not fd.path startswith /srv
  output: o
  priority: NOTICE
"""
READABLE = """
- list: secret_names
  items: [vault.hcl, token]
- macro: secret_file
  condition: fd.basename in (secret_names) or fd.basename startswith secret_ or fd.basename contains .kdbx
- rule: Two events, one branch on open
  id: C-TWO
  condition: >
    (evt.name = compile and code.source contains xyz)
    or (evt.name = open and (secret_file or fd.name endswith .db or fd.path = /var/run/docker.sock))
  output: o
  priority: NOTICE
- rule: Name list and path prefix
  id: C-LIST
  condition: evt.name = open and fd.name in (/opt/a, b) and fd.path startswith /opt and not fd.write
  output: o
  priority: NOTICE
"""


def open_rules(ruleset: RuleSet) -> list[Rule]:
    return [rule for rule in ruleset.active() if "open" in rule.events]


def full_match(rules: Sequence[Rule], args: tuple[Any, ...]) -> bool:
    """Every rule in full, on the event's fields as favourable as a request can make them."""
    event = extract("open", args)
    if event is None:
        return False
    event = Event(event)
    event["_scope"] = None
    event["in_request"] = True
    event["input.correlated"] = True
    event["input.source"] = "query:file"
    return any(rule.matches(event) for rule in rules)


def check(rules: Sequence[Rule], admits: Callable[[tuple[Any, ...]], bool], name: Any) -> tuple[bool, bool]:
    results = []
    for mode, flags in (("r", os.O_RDONLY), ("w", os.O_WRONLY | os.O_CREAT)):
        args = (name, mode, flags)
        matched = full_match(rules, args)
        admitted = admits(args)
        assert admitted or not matched, f"prefilter rejected {name!r} ({mode}) but a rule matches it"
        assert admits(args) == admitted  # the remembered answer is the same
        results.append((matched, admitted))
    return results[0]


@pytest.fixture(scope="module")
def default_rules() -> list[Rule]:
    return open_rules(load_files([]))


@pytest.fixture(scope="module")
def readable_rules() -> list[Rule]:
    return open_rules(load_text(load_files([]), READABLE, "mine.yaml", "mine"))


def prefilter_of(rules: Sequence[Rule]) -> Callable[[tuple[Any, ...]], bool]:
    admits = open_prefilter([rule.open_tests for rule in rules])
    assert admits is not None
    return admits


def test_malicious_names_are_admitted_and_matched_benign_ones_rejected(default_rules: list[Rule]) -> None:
    admits = prefilter_of(default_rules)
    for name in MALICIOUS:
        assert check(default_rules, admits, name) == (True, True), name
    for name in BENIGN:
        matched, admitted = check(default_rules, admits, name)
        assert not matched, name
        assert admitted == name.endswith(".pem"), name  # a .pem is admitted: the basename test needs the path


def test_other_name_types_and_the_working_directory(default_rules: list[Rule], tmp_path: Path) -> None:
    admits = prefilter_of(default_rules)
    assert check(default_rules, admits, b"/etc/shadow") == (True, True)
    assert check(default_rules, admits, Path("/srv/app/.env")) == (True, True)
    assert check(default_rules, admits, Path("/srv/app/index.html")) == (False, False)
    assert check(default_rules, admits, 7) == (False, False)  # a file descriptor
    os.chdir("/etc")
    try:
        assert check(default_rules, admits, "passwd") == (True, True)  # relative: normalized against /etc
        assert check(default_rules, admits, "hostname") == (False, False)
    finally:
        os.chdir(tmp_path)


def test_rules_of_every_readable_shape(readable_rules: list[Rule]) -> None:
    admits = prefilter_of(readable_rules)
    for name in ("/etc/vault.hcl", "/srv/secret_x", "/home/a/p.kdbx", "/data/app.db", "/var/run/docker.sock",
                 "/opt/a", *MALICIOUS):  # fmt: skip
        assert check(readable_rules, admits, name) == (True, True), name
    for name in ("/srv/vault.hcl.bak", "/opt/b", "/srv/secret", "/var/run/docker.sockx", *BENIGN):
        assert check(readable_rules, admits, name)[0] is False, name


def test_a_rule_without_a_readable_test_turns_the_prefilter_off(monkeypatch: pytest.MonkeyPatch) -> None:
    custom = open_rules(load_text(RuleSet(), CUSTOM, "mine.yaml", "mine"))
    assert [rule.open_tests for rule in custom] == [None, None]
    assert open_prefilter([rule.open_tests for rule in custom]) is None
    monkeypatch.setattr(rules_module, "_python_rules", [])  # python_rule registers process-wide
    rule = python_rule("C-PY", "python", events=["open"], predicate=lambda event: True)
    assert rule.open_tests is None


def test_the_sensor_uses_it_only_when_every_rule_on_open_has_a_test(tmp_path: Path) -> None:
    class Settings:
        security = "detect"
        security_rules: tuple[str, ...] = ()
        security_disabled_rules: tuple[str, ...] = ()

    config = sensor.prepare(Settings())
    assert config is not None and "open" in config.prefilters
    Settings.security_rules = (str(tmp_path / "custom.yaml"),)
    (tmp_path / "custom.yaml").write_text(CUSTOM, encoding="utf-8")
    config = sensor.prepare(Settings())
    assert config is not None and "open" not in config.prefilters


_PARTS = st.sampled_from(
    ["", ".", "..", "~", "etc", "passwd", "shadow", "proc", "self", "1", "environ", ".ssh", ".aws", "id_rsa",
     ".env", "b.env", "x.key", "privkey.pem", "my-private.pem", "chain.pem", "tmp", "srv", "credentials",
     "vault.hcl", "secret_a", "a.kdbx", "app.db", "opt", "a", "b", "docker.sock", "run", "var"]
)  # fmt: skip
_NAMES = st.tuples(st.sampled_from(["", "/", "~/", "../", "./"]), st.lists(_PARTS, max_size=6)).map(
    lambda parts: parts[0] + "/".join(parts[1])
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=st.one_of(_NAMES, _NAMES.map(str.encode), st.text(max_size=40)))
def test_fuzz_a_rejected_name_matches_no_rule(
    name: str | bytes, default_rules: list[Rule], readable_rules: list[Rule]
) -> None:
    for rules in (default_rules, readable_rules):
        check(rules, prefilter_of(rules), name)


def test_a_failing_prefilter_falls_back_to_the_full_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def broken(args: tuple[Any, ...]) -> bool:
        raise RuntimeError("prefilter bug")

    def evaluate(name: str, args: tuple[Any, ...]) -> None:
        seen.append(name)

    monkeypatch.setattr(sensor, "_watched", frozenset({"open"}))
    monkeypatch.setattr(sensor, "_prefilters", {"open": broken})
    monkeypatch.setattr(sensor, "_evaluate", evaluate)
    sensor._hook("open", ("/etc/passwd", "r", 0))  # never raises into the caller
    assert seen == ["open"]
    monkeypatch.setattr(sensor, "_prefilters", {"open": lambda args: False})
    sensor._hook("open", ("/tmp/x", "r", 0))
    assert seen == ["open"]  # rejected: not evaluated
