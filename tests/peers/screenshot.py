"""Take docs/demo.md's screenshot of the demo's trace in Jaeger's UI, from a real `veil demo --jaeger` run.

    python -m tests.peers.screenshot [--jaeger-binary PATH] [--out docs/images/demo-jaeger-trace.png]

Runs the demo with a Jaeger that has its UI embedded (tests/peers/build.sh with VEIL_JAEGER_UI_BUILD, or a
Jaeger release binary), opens the "normal order" trace with headless Chromium (Debian's `chromium`), saves the
PNG, and writes beside it (demo-jaeger-trace.json) the services and spans of that trace as the query API the
UI reads (/api/traces/{id}) returned them; tests/peers/test_demo_jaeger.py checks every later run against it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.peers.servers import ROOT, get_json
from veil.demo.jaeger import find_jaeger_binary

SCENARIO = "normal order"
_UI_LINE = re.compile(r"Jaeger UI and query API: (?P<url>http://127\.0\.0\.1:\d+)")
_TRACE_LINE = re.compile(rf"^  {SCENARIO}\s+POST /checkout -> \d+\s+trace (?P<trace>[0-9a-f]{{32}})$")
_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",  # let the page's scripts fetch the trace and draw it
)


def _run_demo(binary: Path, log_dir: Path) -> tuple[subprocess.Popen[str], str, str]:
    command = [sys.executable, "-m", "veil.cli", "demo", "--jaeger", "--jaeger-binary", str(binary)]
    process = subprocess.Popen(
        [*command, "--log-dir", str(log_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    ui = trace_id = ""
    for line in process.stdout:
        sys.stdout.write(line)
        if match := _UI_LINE.search(line):
            ui = match["url"]
        if match := _TRACE_LINE.match(line.rstrip("\n")):
            trace_id = match["trace"]
        if "press Ctrl-C to stop it" in line:
            return process, ui, trace_id
    raise SystemExit(f"the demo ended with code {process.wait()} before Jaeger was ready for the screenshot")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jaeger-binary", help="a Jaeger v2 binary with its UI (default: as veil demo finds one)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "demo-jaeger-trace.png")
    parser.add_argument("--size", default="1600,1000", help="the browser window, WIDTH,HEIGHT")
    arguments = parser.parse_args()
    binary = find_jaeger_binary(arguments.jaeger_binary)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None or chromium is None:
        print("needs a Jaeger binary with its UI and Debian's chromium", file=sys.stderr)
        return 2
    version = subprocess.run([str(binary), "version"], capture_output=True, text=True, check=False).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="veil-screenshot-") as scratch:
        process, ui, trace_id = _run_demo(binary, Path(scratch) / "logs")
        try:
            with urllib.request.urlopen(ui + "/", timeout=10) as response:
                page = response.read().decode("utf-8", "replace")
            if "This is not the Jaeger UI" in page:
                print(f"{binary} has no UI embedded: see tests/peers/build.sh (VEIL_JAEGER_UI_BUILD)", file=sys.stderr)
                return 2
            time.sleep(1.0)  # the relay has sent everything; let Jaeger's batch processor store it
            (trace,) = get_json(f"{ui}/api/traces/{trace_id}")["data"]
            services = {key: value["serviceName"] for key, value in trace["processes"].items()}
            spans = sorted([services[span["processID"]], span["operationName"]] for span in trace["spans"])
            arguments.out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    chromium,
                    *_CHROMIUM_FLAGS,
                    f"--user-data-dir={Path(scratch) / 'chromium'}",
                    f"--window-size={arguments.size}",
                    f"--screenshot={arguments.out.resolve()}",
                    f"{ui}/trace/{trace_id}",
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            manifest = {
                "scenario": SCENARIO,
                "trace_id": trace_id,
                "jaeger": json.loads(version.splitlines()[-1]) if version else None,
                "services": sorted(set(services.values())),
                "spans": spans,
            }
            arguments.out.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
            print(f"wrote {arguments.out} and {arguments.out.with_suffix('.json')}")
        finally:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
