"""Start-up cost of veil's auto-instrumentation with every supported framework installed and none imported.

Each measurement is a fresh interpreter (`python -c`) that imports veil, times `veil.configure(auto_instrument=
False)` (the same SDK setup in every variant: OTLP/HTTP exporters for traces, metrics and logs pointed at a
closed loopback port, runtime metrics on, startup report off), then times `veil.instrument()`, which is what
`veil.configure()` adds by default:

* bare       - no `instrument()`: the floor;
* veil       - `instrument()` of everything installed; libraries not imported yet are instrumented when the
               program first imports them;
* imported   - reference: the program imported every framework before `configure()`, so `instrument()` patches
               each at once (the eager cost, which veil paid for every installed library before it was lazy);
               the time of those imports is printed separately and is not part of either figure.

Variants run interleaved, round by round; reported are medians over rounds, and which frameworks were imported
after `instrument()` (none may be, for `veil`).

    python benchmarks/bench_startup.py [--rounds 9] [--src path/to/another/checkout/src]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("flask", "django", "fastapi", "starlette", "aiohttp", "requests", "httpx", "urllib3")

CHILD = textwrap.dedent(
    """
    import json, sys, time
    imported_ms = 0.0
    if sys.argv[1] == "imported":
        started = time.perf_counter()
        for name in {frameworks!r}:
            __import__(name)
        imported_ms = (time.perf_counter() - started) * 1000
    import veil
    started = time.perf_counter()
    telemetry = veil.configure(auto_instrument=False)
    configure_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    result = veil.instrument() if sys.argv[1] != "bare" else telemetry.instrumented
    instrument_ms = (time.perf_counter() - started) * 1000
    print(json.dumps({{
        "configure_ms": configure_ms,
        "instrument_ms": instrument_ms,
        "imported_ms": imported_ms,
        "loaded": sorted(name for name in {frameworks!r} if name in sys.modules),
        "instrumented": sorted(result.instrumented),
        "pending": sorted(getattr(result, "pending", ())),
    }}))
    telemetry.shutdown(timeout_millis=100)
    """
).format(frameworks=FRAMEWORKS)

VARIANTS = ("bare", "veil", "imported")


def environment(source: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_"))}
    env.update(
        PYTHONPATH=source,
        OTEL_SERVICE_NAME="startup",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        VEIL_STARTUP_REPORT="false",
    )
    return env


def measure(variant: str, source: str) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, variant], env=environment(source), capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--src", default=str(ROOT / "src"), help="veil's source directory (to compare checkouts)")
    arguments = parser.parse_args()
    samples: dict[str, list[dict[str, object]]] = {variant: [] for variant in VARIANTS}
    for _ in range(arguments.rounds):
        for variant in VARIANTS:
            samples[variant].append(measure(variant, arguments.src))

    def median(variant: str, key: str) -> float:
        return statistics.median(float(sample[key]) for sample in samples[variant])  # type: ignore[arg-type]

    print(f"veil start-up, {arguments.rounds} rounds, medians (Python {sys.version.split()[0]})")
    header = f"{'variant':10} {'configure(auto_instrument=False)':>33} {'instrument()':>13} {'imports before':>15}"
    print(f"{header}  frameworks imported afterwards")
    for variant in VARIANTS:
        configure_ms, instrument_ms = median(variant, "configure_ms"), median(variant, "instrument_ms")
        last = samples[variant][-1]
        loaded = last["loaded"] if variant != "imported" else "(imported by the program)"
        imports = median(variant, "imported_ms")
        print(f"{variant:10} {configure_ms:30.1f} ms {instrument_ms:10.1f} ms {imports:12.1f} ms  {loaded}")
    print(f"veil: instrumented {samples['veil'][-1]['instrumented']}, pending {samples['veil'][-1]['pending']}")


if __name__ == "__main__":
    main()
