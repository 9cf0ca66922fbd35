"""Run in a subprocess by test_sensor.py (audit hooks are permanent): every default rule fired once and a benign
neighbour of each, inside real Flask requests; prints one JSON object {case: [findings]} on the last line.

Run it inside a private network namespace: the metadata cases connect to 169.254.169.254.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from flask import Flask, request

import veil
from veil.security import Finding, add_listener

veil.configure(
    service_name="sensor-cases",
    traces_exporter="none",
    metrics_exporter="none",
    logs_exporter="none",
    security_aggregation_window=0,
    security_rate_limit=0,
    security_signals=False,  # request-level signals (issue 15) are tested on their own
)
found: list[Finding] = []
add_listener(found.append)
results: dict[str, list[dict[str, Any]]] = {}
workdir = tempfile.mkdtemp()
os.makedirs(os.path.join(workdir, "files", "sub"))
with open(os.path.join(workdir, "files", "report.txt"), "w") as handle:
    handle.write("report")
with open(os.path.join(workdir, ".env"), "w") as handle:
    handle.write("SECRET=1")
libc = ctypes.util.find_library("c") or "libc.so.6"


def record(case: str, start: int) -> None:
    results[case] = [
        {
            "rule": finding.rule_id,
            "correlated": finding.correlated,
            "priority": finding.priority,
            "trace_id": finding.trace_id,
            "fields": {key: value for key, value in finding.fields.items() if isinstance(value, (str, int, bool))},
            "message": finding.message,
        }
        for finding in found[start:]
    ]


def outside(case: str, action: Callable[[], object]) -> None:
    start = len(found)
    with contextlib.suppress(OSError):
        action()
    record(case, start)


def connect(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(1)
        with contextlib.suppress(OSError):
            sock.connect((host, port))


def lookup(host: str) -> None:
    with contextlib.suppress(OSError):
        socket.getaddrinfo(host, 80)


def traversal() -> None:
    name = request.args["name"]
    with open(os.path.join(workdir, "files", name)) as handle:
        handle.read()


def internal_dotdot() -> None:
    with open(os.path.join(workdir, "files", "sub", "..", "report.txt")) as handle:
        handle.read()


def unpickle_global() -> None:
    pickle.Unpickler(io.BytesIO(b"cos\nsystem\n.")).load()  # loads os.system, never calls it


def evaluate() -> None:
    eval(request.args["expr"])


# (case, in-request action, query string); before any request: the start-up cases.
IN_REQUEST: list[tuple[str, Callable[[], object], str]] = [
    ("spawn_shell", lambda: os.system("true"), ""),
    (
        "spawn_correlated",
        lambda: subprocess.run(f"echo {request.args['host']}", shell=True, check=False),
        "host=127.0.0.1;id",
    ),
    ("metadata_connect", lambda: connect("169.254.169.254", 80), ""),
    ("metadata_lookup", lambda: lookup("metadata.google.internal"), ""),
    ("metadata_benign_loopback", lambda: connect("127.0.0.1", 9), ""),
    ("credential_passwd", lambda: open("/etc/passwd").close(), ""),
    ("credential_env", lambda: open(os.path.join(workdir, ".env")).close(), ""),
    (
        "credential_benign_hostname",
        lambda: open("/etc/hostname").close() if os.path.exists("/etc/hostname") else None,
        "",
    ),
    ("traversal", traversal, "name=../../../../etc/hostname"),
    ("traversal_benign_input", traversal, "name=report.txt"),
    ("traversal_benign_internal", internal_dotdot, ""),
    ("pickle", unpickle_global, ""),
    ("pickle_benign", lambda: pickle.loads(pickle.dumps({"when": __import__("datetime").date(2024, 1, 1)})), ""),
    ("dlopen", lambda: ctypes.CDLL(libc), ""),
    ("eval_correlated", evaluate, "expr=__import__('os').getpid()"),
    ("eval_benign_constant", lambda: eval("1 + 2"), ""),
    ("import_pty", lambda: __import__("pty"), ""),
    ("import_benign", lambda: __import__("colorsys"), ""),
]

app = Flask("sensor_cases")
actions = {case: action for case, action, _ in IN_REQUEST}


@app.route("/case/<name>")
def run_case(name: str) -> str:
    actions[name]()
    return "ok"


if __name__ == "__main__":
    # start-up: before the first request, nothing here is an attack
    outside("startup_spawn", lambda: subprocess.run(["true"], check=False))
    outside("startup_passwd", lambda: open("/etc/passwd").close())
    outside("startup_env", lambda: open(os.path.join(workdir, ".env")).close())
    outside("startup_dlopen", lambda: ctypes.CDLL(libc))
    outside("startup_compile", lambda: compile("__import__('os')", "<string>", "exec"))
    client = app.test_client()
    for case, _, query in IN_REQUEST:
        start = len(found)
        response = client.get(f"/case/{case}" + (f"?{query}" if query else ""))
        assert response.status_code == 200, (case, response.status_code)
        response.close()
        record(case, start)
    # once serving: a background thread's dlopen is "after start-up"
    outside("dlopen_after_startup", lambda: ctypes.CDLL(libc))
    print(json.dumps(results))
    sys.stdout.flush()
