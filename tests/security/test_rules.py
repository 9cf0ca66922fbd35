"""The rule language: loading, errors with file and line, semantics of every comparison, exceptions, lists and
macros, `veil rules lint|test`, and hypothesis fuzzing of the parser (never a crash, never code execution)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veil.cli import main
from veil.errors import ConfigurationError
from veil.security.events import Event
from veil.security.expression import ExpressionError, compile_node, parse
from veil.security.rules import RuleFileError, RuleSet, load_files, load_text

RULE = """
- list: tools
  items: [curl, wget]
- macro: spawned
  condition: evt.name in (subprocess.Popen, os.system)
- rule: Download tool
  id: MINE-DL
  desc: curl or wget while serving
  condition: spawned and in_request and proc.name in (tools, nc)
  output: "downloader %proc.name on %http.route"
  priority: warning
  tags: [T1105]
  exceptions:
    - name: health
      fields: [http.route, proc.cmdline]
      comps: [=, contains]
      values:
        - [/health, "localhost"]
"""


def rule_item(
    condition: str = "evt.name = open", *, name: str = "y", rule_id: str = "Y", priority: str = "ERROR"
) -> str:
    return f"- rule: {name}\n  id: {rule_id}\n  condition: {condition}\n  output: o\n  priority: {priority}\n"


def load(text: str, default: bool = False) -> RuleSet:
    ruleset = load_files([]) if default else RuleSet()
    return load_text(ruleset, text, "mine.yaml", "mine")


def event(**fields: object) -> Event:
    result = Event({key.replace("__", "."): value for key, value in fields.items()})
    result.setdefault("_scope", None)
    return result


def test_a_rule_with_lists_macros_exceptions_and_output() -> None:
    (rule,) = load(RULE).rules
    assert (rule.id, rule.priority, rule.technique, rule.events) == (
        "MINE-DL",
        "WARNING",
        "T1105",
        frozenset({"subprocess.Popen", "os.system"}),
    )
    hit = event(evt__name="subprocess.Popen", proc__exe="/usr/bin/curl", proc__cmdline="curl x", in_request=True)
    hit["http.route"] = "/dl"
    assert rule.matches(hit) and rule.render(hit) == "downloader curl on /dl"
    assert rule.matches(event(evt__name="os.system", proc__exe="nc", in_request=True))
    assert not rule.matches(event(evt__name="subprocess.Popen", proc__exe="/usr/bin/curl", in_request=False))
    excepted = event(
        evt__name="subprocess.Popen", proc__exe="curl", proc__cmdline="curl http://localhost/", in_request=True
    )
    excepted["http.route"] = "/health"
    assert not rule.matches(excepted)


@pytest.mark.parametrize(
    ("condition", "fields", "expected"),
    [
        ("fd.name = /etc/x", {"fd.name": "/etc/x"}, True),
        ("fd.name != /etc/x", {"fd.name": "/etc/y"}, True),
        ("fd.name != /etc/x", {}, False),  # absent is never compared true
        ("net.dest.port > 1000", {"net.dest.port": 8080}, True),
        ("net.dest.port <= 80", {"net.dest.port": 8080}, False),
        ("net.dest.port = 443", {"net.dest.port": 443}, True),
        ("fd.name contains ssh", {"fd.name": "/root/.ssh/id"}, True),
        ("fd.name icontains SSH", {"fd.name": "/root/.ssh/id"}, True),
        ("fd.name startswith /proc", {"fd.name": "/proc/1/environ"}, True),
        ("fd.name endswith .pem", {"fd.name": "a.pem"}, True),
        ("fd.name glob '/proc/*/environ'", {"fd.name": "/proc/12/environ"}, True),
        ("fd.name pmatch (/etc, /root)", {"fd.name": "/etc/passwd"}, True),
        ("fd.name pmatch (/etc)", {"fd.name": "/etcetera"}, False),
        ("fd.name matches '^/tmp/[0-9]+$'", {"fd.name": "/tmp/123"}, True),
        ("fd.name in ('/a b', /c)", {"fd.name": "/a b"}, True),
        ("fd.name exists", {"fd.name": "x"}, True),
        ("not fd.name exists", {}, True),
        ("in_request", {"in_request": True}, True),
        ("(fd.name = a or fd.name = b) and not fd.write", {"fd.name": "b", "fd.write": False}, True),
    ],
)
def test_comparisons(condition: str, fields: dict[str, object], expected: bool) -> None:
    predicate = compile_node(parse(f"evt.name = open and ({condition})"), {})
    assert predicate(event(evt__name="open", **{k.replace(".", "__"): v for k, v in fields.items()})) is expected


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (
            "- rule: x\n  id: X\n  condition: evt.name = open and fd.nmae = a\n  output: o\n  priority: ERROR\n",
            1,
            "did you mean 'fd.name'",
        ),
        (
            "- list: a\n  items: [x]\n" + rule_item(priority="LOUD"),
            3,
            "priority 'LOUD'",
        ),
        ("- rule: y\n  condition: evt.name = open\n  output: o\n  priority: ERROR\n", 1, "'id' is required"),
        (
            "- rule: y\n  id: Y\n  condition: fd.name = a\n  output: o\n  priority: ERROR\n",
            1,
            "must name its audit events",
        ),
        (
            "- rule: y\n  id: Y\n  condition: evt.name = os.fork\n  output: o\n  priority: ERROR\n",
            1,
            "unknown audit event",
        ),
        (
            "- rule: y\n  id: Y\n  condition: evt.name = open and (fd.name = a\n  output: o\n  priority: ERROR\n",
            1,
            "bad condition",
        ),
        ("- rule: y\n  id: Y\n  condtion: evt.name = open\n", 1, "did you mean 'condition'"),
        ("- rule: y\n  id: Y\n  condition: evt.name = open\n  output: '%fd.nope'\n  priority: ERROR\n", 1, "%fd.nope"),
        (
            rule_item("evt.name = open and fd.name matches '('"),
            1,
            "regular expression",
        ),
        (
            rule_item() + "  exceptions:\n    - name: e\n      fields: [fd.name]\n      comps: [=, =]\n",
            1,
            "one comparison per field",
        ),
        ("- rule: NOPE\n  append: true\n  exceptions: []\n", 1, "not defined earlier"),
        (
            rule_item(name="a", rule_id="A") + rule_item(name="b", rule_id="A"),
            6,
            "already defined",
        ),
        ("key: [unclosed\n", 2, "not valid YAML"),
        ("{}\n", 1, "a YAML list"),
    ],
)
def test_errors_name_file_line_and_problem(text: str, line: int, problem: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        load(text)
    assert isinstance(caught.value, ConfigurationError)
    assert caught.value.file == "mine.yaml" and caught.value.line == line, str(caught.value)
    assert problem in str(caught.value)
    assert str(caught.value).startswith(f"mine.yaml:{line}: ")


def test_append_exceptions_disable_and_falco_comps_on_default_rules() -> None:
    ruleset = load(
        """
- rule: VEIL-RT-SPAWN
  append: true
  exceptions:
    - name: git
      fields: [proc.name, proc.cmdline]
      comps: [=, startswith]
      values: [[git, git status]]
- rule: Native library loaded after start-up
  enabled: false
""",
        default=True,
    )
    spawn = ruleset.find("VEIL-RT-SPAWN")
    assert spawn is not None
    git = event(evt__name="subprocess.Popen", proc__exe="/usr/bin/git", proc__cmdline="git status", in_request=True)
    assert not spawn.matches(git)
    assert spawn.matches(
        event(evt__name="subprocess.Popen", proc__exe="/usr/bin/git", proc__cmdline="git push", in_request=True)
    )
    assert "VEIL-RT-DLOPEN" not in {rule.id for rule in ruleset.active()}
    assert "VEIL-RT-PICKLE" not in {rule.id for rule in ruleset.active(["VEIL-RT-PICKLE"])}


def test_the_default_pack_is_complete() -> None:
    rules = load_files([]).rules
    assert len({rule.id for rule in rules}) == len(rules) == 8
    for rule in rules:
        assert rule.id.startswith("VEIL-RT-") and rule.technique and rule.description and rule.reference


def test_lint_and_test_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(RULE)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: x\n  id: X\n  condition: evt.name = open and\n  output: o\n  priority: ERROR\n")
    assert main(["rules", "lint", str(good)]) == 0
    assert "good.yaml: ok (1 new rules; 9 active" in capsys.readouterr().out
    assert main(["rules", "lint", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}:1: bad condition" in captured.err
    events = tmp_path / "events.jsonl"
    lines = [
        {"evt.name": "subprocess.Popen", "proc.exe": "/usr/bin/wget", "proc.cmdline": "wget x", "in_request": True},
        {"evt.name": "open", "fd.name": "/etc/shadow"},
        {"evt.name": "open", "fd.name": "/srv/app/report.txt", "in_request": True},
    ]
    events.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert main(["rules", "test", str(good), str(events)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(":1: MINE-DL WARNING" in line for line in out) and any(":1: VEIL-RT-SPAWN" in line for line in out)
    assert any(":2: VEIL-RT-CREDENTIAL-FILE" in line for line in out)
    assert not any(":3:" in line for line in out)
    assert out[-1] == "3 events; MINE-DL=1, VEIL-RT-CREDENTIAL-FILE=1, VEIL-RT-SPAWN=1"
    assert main(["rules", "test", "--no-default", str(good), str(events)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3 events; MINE-DL=1"


# ------------------------------------------------------------------------------------------- fuzzing

_WORDS = st.sampled_from(
    ["evt.name", "fd.name", "=", "!=", "in", "(", ")", ",", "and", "or", "not", "contains", "glob", "matches",
     "open", "'x'", '"y"', "exists", "__import__('os').system('id')", "1", ">", "macro1", "tools", "pmatch"]
)  # fmt: skip


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(_WORDS, max_size=25).map(" ".join)))
def test_fuzz_the_expression_parser(text: str) -> None:
    try:
        node = parse(text, {"macro1"}, {"tools": ("a", "b")})
    except ExpressionError:
        return
    predicate = compile_node(node, {"macro1": lambda event: True})
    predicate(event(evt__name="open", fd__name="x"))  # evaluating never raises either


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(_WORDS, max_size=20).map(
            lambda words: (
                "- rule: r\n  id: R\n  priority: ERROR\n  output: o\n  condition: " + json.dumps(" ".join(words)) + "\n"
            )
        ),
    )
)
def test_fuzz_rule_files_give_a_rule_file_error_or_load(text: str) -> None:
    with contextlib.suppress(RuleFileError):
        load(text)


def test_conditions_are_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = [
        f"evt.name = open and __import__('os').system('touch {marker}')",
        f"evt.name = open and fd.name = {{{{ __import__('os').system('touch {marker}') }}}}",
        f"evt.name = open and fd.name in (__import__('os').system('touch {marker}'))",
    ]
    for condition in hostile:
        try:
            ruleset = load(
                f"- rule: r\n  id: R\n  output: o\n  priority: ERROR\n  condition: {json.dumps(condition)}\n"
            )
        except RuleFileError:
            continue
        for rule in ruleset.rules:
            rule.matches(event(evt__name="open", fd__name="x"))
    assert not marker.exists()
