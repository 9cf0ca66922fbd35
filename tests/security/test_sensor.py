"""The audit-hook sensor and the default pack, in subprocesses (hooks are permanent) inside a loopback-only
network namespace: each default rule fires on its attack and not on its benign neighbour."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.security.netns import environment, isolated, require_netns

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, *, netns: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    if netns:
        require_netns()
        argv = isolated(argv)
    return subprocess.run(
        argv, capture_output=True, text=True, cwd=ROOT, env=environment(**env), timeout=120, check=False
    )


@pytest.fixture(scope="module")
def cases() -> dict[str, list[dict[str, Any]]]:
    require_netns()
    result = subprocess.run(
        isolated([sys.executable, "-m", "tests.security.sensor_cases"]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed: dict[str, list[dict[str, Any]]] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


FIRES = {
    "spawn_shell": "VEIL-RT-SPAWN",
    "spawn_correlated": "VEIL-RT-SPAWN",
    "metadata_connect": "VEIL-RT-METADATA",
    "metadata_lookup": "VEIL-RT-METADATA",
    "credential_passwd": "VEIL-RT-CREDENTIAL-FILE",
    "credential_env": "VEIL-RT-CREDENTIAL-FILE",
    "traversal": "VEIL-RT-TRAVERSAL",
    "pickle": "VEIL-RT-PICKLE",
    "dlopen": "VEIL-RT-DLOPEN",
    "dlopen_after_startup": "VEIL-RT-DLOPEN",
    "eval_correlated": "VEIL-RT-EVAL",
    "import_pty": "VEIL-RT-IMPORT",
}
SILENT = [
    "startup_spawn",
    "startup_passwd",
    "startup_env",
    "startup_dlopen",
    "startup_compile",
    "metadata_benign_loopback",
    "credential_benign_hostname",
    "traversal_benign_input",
    "traversal_benign_internal",
    "pickle_benign",
    "eval_benign_constant",
    "import_benign",
]


@pytest.mark.parametrize("case", sorted(FIRES))
def test_each_default_rule_fires_exactly_once_on_its_attack(cases: dict[str, list[dict[str, Any]]], case: str) -> None:
    (finding,) = cases[case]
    assert finding["rule"] == FIRES[case]
    if case not in ("dlopen_after_startup",):
        assert finding["trace_id"] != 0  # on the request's trace
        assert finding["fields"]["http.route"] == "/case/<name>"


@pytest.mark.parametrize("case", SILENT)
def test_benign_neighbours_and_start_up_give_no_finding(cases: dict[str, list[dict[str, Any]]], case: str) -> None:
    assert cases[case] == []


def test_every_default_rule_has_an_attack_case(cases: dict[str, list[dict[str, Any]]]) -> None:
    from veil.security.rules import load_files

    assert {rule.id for rule in load_files([]).rules} == set(FIRES.values())


def test_correlated_input_is_marked_and_raises_the_priority(cases: dict[str, list[dict[str, Any]]]) -> None:
    (plain,) = cases["spawn_shell"]
    (injected,) = cases["spawn_correlated"]
    assert (plain["correlated"], plain["priority"]) == (False, "ERROR")
    assert (injected["correlated"], injected["priority"]) == (True, "CRITICAL")
    assert injected["fields"]["input.source"] == "query:host"
    assert cases["traversal"][0]["fields"]["input.source"] == "query:name"
    assert cases["eval_correlated"][0]["correlated"] is True


def test_off_installs_nothing_and_detect_is_the_default() -> None:
    code = """
        import os, sys, veil
        from veil.security import add_listener
        found = []
        add_listener(found.append)
        veil.configure(traces_exporter="none", metrics_exporter="none", logs_exporter="none")
        print("sensor" if "veil.security.sensor" in sys.modules else "no-sensor", len(found))
        with open("/etc/shadow" if os.path.exists("/etc/shadow") else "/etc/passwd") as f:
            pass
        import pickle, io
        pickle.Unpickler(io.BytesIO(b"cos\\nsystem\\n.")).load()
        print(len(found))
    """
    off = run_python(code, VEIL_SECURITY="off")
    assert off.returncode == 0, off.stderr
    assert off.stdout.split() == ["no-sensor", "0", "0"]
    default = run_python(code)
    assert default.returncode == 0, default.stderr
    assert default.stdout.split()[0] == "sensor" and int(default.stdout.split()[-1]) >= 1


def test_a_bad_rule_file_fails_configure_with_file_and_line(tmp_path: Path) -> None:
    rules = tmp_path / "mine.yaml"
    rules.write_text(
        "- rule: Mine\n  id: MINE-1\n  condition: evt.name = open and fd.nmae = /x\n  output: x\n  priority: ERROR\n"
    )
    result = run_python(
        """
        import veil
        try:
            veil.configure(traces_exporter="none")
        except veil.ConfigurationError as error:
            print("ERROR", error)
        """,
        VEIL_SECURITY_RULES=str(rules),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ERROR ")
    assert f"{rules}:1:" in result.stdout and "fd.nmae" in result.stdout and "fd.name" in result.stdout


def test_the_sensor_survives_fork_and_a_raising_python_rule_never_reaches_the_app() -> None:
    code = """
        import os, sys, json, veil
        from veil.security import add_listener
        from veil.security.rules import python_rule

        def broken(event):
            raise RuntimeError("rule bug")

        python_rule("MINE-BROKEN", "Broken rule", events=["open"], predicate=broken)
        veil.configure(traces_exporter="none", metrics_exporter="none", logs_exporter="none")
        found = []
        add_listener(found.append)
        with open("/etc/hostname") as f:
            f.read()
        pid = os.fork()
        if pid == 0:
            import io, pickle
            pickle.Unpickler(io.BytesIO(b"cos\\nsystem\\n.")).load()
            os._exit(0 if [f.rule_id for f in found] == ["VEIL-RT-PICKLE"] else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "child 0" in result.stdout


def test_a_python_rule_fires(tmp_path: Path) -> None:
    code = """
        import veil
        from veil.security import add_listener
        from veil.security.rules import python_rule

        python_rule(
            "MINE-TMP", "Write under /tmp/veil-probe", events=["open"], priority="NOTICE",
            predicate=lambda event: bool(event["fd.write"]) and str(event["fd.name"]).endswith("veil-probe"),
        )
        veil.configure(traces_exporter="none", metrics_exporter="none", logs_exporter="none")
        found = []
        add_listener(found.append)
        open({!r}, "w").close()
        open({!r}, "r").close()
        print([finding.rule_id for finding in found])
    """.format(str(tmp_path / "veil-probe"), str(tmp_path / "veil-probe"))
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['MINE-TMP']"


def test_block_mode_refuses_the_call_and_answers_403(tmp_path: Path) -> None:
    code = """
        import json, os, subprocess, sys, veil
        from veil.security import Blocked, add_listener

        sentinel = sys.argv[1]
        veil.configure(traces_exporter="none", metrics_exporter="none", logs_exporter="none")
        found = []
        add_listener(found.append)
        subprocess.run(["true"], check=True)  # start-up: allowed even in block mode

        from flask import Flask
        flask_app = Flask("blocked")

        @flask_app.route("/touch")
        def touch():
            subprocess.run(["touch", sentinel + "-flask"], check=True)
            return "done"

        from fastapi import FastAPI
        from fastapi.testclient import TestClient
        api = FastAPI()

        @api.get("/touch")
        def api_touch():
            subprocess.run(["touch", sentinel + "-fastapi"], check=True)
            return "done"

        caught = []

        @flask_app.route("/caught")
        def caught_route():
            try:
                os.system("touch " + sentinel + "-caught")
            except Blocked as error:
                caught.append(isinstance(error, PermissionError))
            return "handled"

        flask_response = flask_app.test_client().get("/touch")
        flask_body = flask_response.data
        flask_response.close()
        caught_response = flask_app.test_client().get("/caught")
        caught_response.close()
        with TestClient(api, raise_server_exceptions=False) as client:
            api_response = client.get("/touch")
        print(json.dumps({
            "flask": [flask_response.status_code, flask_body.decode()],
            "fastapi": [api_response.status_code, api_response.text],
            "caught": [caught_response.status_code, caught],
            "findings": [[f.rule_id, f.action] for f in found],
            "sentinels": sorted(name for name in os.listdir(os.path.dirname(sentinel))),
        }))
    """
    sentinel = tmp_path / "sentinel"
    argv = [sys.executable, "-c", textwrap.dedent(code), str(sentinel)]
    result = subprocess.run(
        argv, capture_output=True, text=True, cwd=ROOT, env=environment(VEIL_SECURITY="block"), timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["sentinels"] == []  # the command never ran
    assert outcome["flask"][0] == 403 and "blocked by a veil security rule" in outcome["flask"][1]
    assert outcome["fastapi"][0] == 403 and "blocked by a veil security rule" in outcome["fastapi"][1]
    assert outcome["caught"] == [200, [True]]  # a handler that catches Blocked keeps its own answer
    assert outcome["findings"] == [["VEIL-RT-SPAWN", "block"]] * 3
