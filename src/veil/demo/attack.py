"""The demo's attack: one command injection against examples/vulnerable, run under `veil run`, so the trace
printed at the end shows the runtime-detection finding (span event and log record) inside the request's tree.

The injected command is `id` (harmless, prints the user); the service binds 127.0.0.1 only.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import format_trace_id

from veil.demo.services import Service, _script
from veil.demo.traffic import Result, Scenario

ATTACK = Scenario(
    "attack",
    "command injection against examples/vulnerable: veil's sensor reports it inside the trace",
    sku="",
    expected_status=200,
)
_PATH = "/ping?host=127.0.0.1;id"


def attack_service(port: int, log_dir: Path) -> Service:
    """The vulnerable example as a demo service, started with `veil run` (runtime detection on by default)."""
    veil_script = _script("veil")
    veil_run = [veil_script, "run"] if veil_script else [sys.executable, "-m", "veil.cli", "run"]
    command = [*veil_run, "--service-name", "vulnerable", "--", sys.executable, "-m", "examples.vulnerable"]
    display = "veil run --service-name vulnerable -- python -m examples.vulnerable"
    return Service(
        "vulnerable", "veil run", command, display, port, {"SHOP_PORT": str(port)}, log_dir / "vulnerable.log"
    )


def send_attack(url: str, timeout: float = 10.0) -> Result:
    """Send the malicious request; its trace id is found afterwards (`trace_of`), from the exported spans."""
    import httpx

    try:
        response = httpx.get(url + _PATH, timeout=timeout)
    except httpx.HTTPError as error:
        return Result(ATTACK, None, "", f"{type(error).__name__}: {error}")
    return Result(ATTACK, response.status_code, "")


def trace_of(spans: Iterable[ReadableSpan]) -> str:
    """The trace id of the attack: the one trace the vulnerable service exported."""
    for span in spans:
        if span.resource.attributes.get(SERVICE_NAME) == "vulnerable" and span.context is not None:
            return format_trace_id(span.context.trace_id)
    return ""
