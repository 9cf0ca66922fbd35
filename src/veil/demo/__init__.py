"""`veil demo`: three services, one trace, secrets redacted -- on this machine, without Docker.

Starts the example shop (examples/shop/: a FastAPI gateway, a Flask inventory, a Django payments service,
each with veil added a different way) as local processes on free 127.0.0.1 ports, sends five requests
through it, stops the services (they flush their telemetry at exit) and prints each trace as a tree across
the three processes, with its log records, from what the services exported over OTLP to a receiver inside
the demo. `--otlp-endpoint URL` also relays that telemetry to a collector; `--jaeger` starts a local Jaeger
binary (veil.demo.jaeger), relays the traces to it and keeps it running for its UI until Ctrl-C.

Also `python -m examples.shop` from a checkout. Needs the `demo` extra (`pip install -e ".[demo]"`).
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

__all__ = ["add_arguments", "find_examples_root", "main", "run_parsed"]

_DEMO_MODULES = ("fastapi", "uvicorn", "flask", "django", "requests", "httpx")


def find_examples_root(start: Path | None = None) -> Path | None:
    """The checkout holding examples/shop/: the current directory (or a parent), or veil's own checkout."""
    candidates = [start or Path.cwd(), *(start or Path.cwd()).parents]
    candidates.append(Path(__file__).resolve().parents[3])  # src/veil/demo/__init__.py -> the checkout
    for candidate in candidates:
        if (candidate / "examples" / "shop" / "gateway.py").is_file():
            return candidate
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, on `parser` (the `veil demo` subcommand or the stand-alone parser)."""
    parser.description = "Run the example shop (three services) locally, send traffic and print the traces."
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="also send everything to this OTLP/HTTP endpoint (a collector, e.g. http://localhost:4318)",
    )
    parser.add_argument(
        "--jaeger",
        action="store_true",
        help="start a local Jaeger (a `jaeger` binary on PATH, from tests/peers/build.sh, or --jaeger-binary), "
        "send the traces to it and keep it running for its UI until Ctrl-C",
    )
    parser.add_argument("--jaeger-binary", metavar="PATH", help="the Jaeger v2 binary for --jaeger")
    parser.add_argument("--exit", action="store_true", help="with --jaeger: stop Jaeger at the end, do not wait")
    parser.add_argument("--log-dir", type=Path, help="where the services write their logs (default: a new temp dir)")
    parser.add_argument(
        "--startup-timeout", type=float, default=30.0, help="seconds to wait for the services (default 30)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the process exit code (0: every request got the answer it should)."""
    parser = argparse.ArgumentParser(prog="veil demo")
    add_arguments(parser)
    return run_parsed(parser.parse_args(sys.argv[1:] if argv is None else list(argv)))


def run_parsed(arguments: argparse.Namespace) -> int:
    """Run the demo with options parsed by a parser `add_arguments` set up."""
    out = sys.stdout
    missing = [name for name in _DEMO_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"veil demo: missing {', '.join(missing)}; install the demo extra: pip install -e '.[demo]' "
            "(from a checkout) or pip install 'veil[demo]'",
            file=sys.stderr,
        )
        return 2
    root = find_examples_root()
    if root is None:
        print(
            "veil demo: examples/shop/ was not found; run it from a checkout of veil "
            "(git clone, then pip install -e '.[demo]')",
            file=sys.stderr,
        )
        return 2
    if arguments.otlp_endpoint and arguments.jaeger:
        print("veil demo: give --otlp-endpoint or --jaeger, not both", file=sys.stderr)
        return 2
    if arguments.otlp_endpoint and not arguments.otlp_endpoint.startswith(("http://", "https://")):
        print("veil demo: --otlp-endpoint takes an http:// or https:// URL (OTLP/HTTP, port 4318)", file=sys.stderr)
        return 2
    if (arguments.jaeger_binary or arguments.exit) and not arguments.jaeger:
        print("veil demo: --jaeger-binary and --exit go with --jaeger", file=sys.stderr)
        return 2
    binary = None
    if arguments.jaeger:
        from veil.demo.jaeger import HOW_TO_GET_JAEGER, find_jaeger_binary

        binary = find_jaeger_binary(arguments.jaeger_binary)
        if binary is None:
            given = arguments.jaeger_binary
            what = f"{given} is not an executable file" if given else "no Jaeger binary was found"
            print(f"veil demo --jaeger: {what}; {HOW_TO_GET_JAEGER}", file=sys.stderr)
            return 2
    log_dir = arguments.log_dir or Path(tempfile.mkdtemp(prefix="veil-demo-"))

    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if binary is not None:
            from veil.demo.jaeger import run_with_jaeger

            return run_with_jaeger(
                binary, root, log_dir.resolve(), arguments.startup_timeout, wait=not arguments.exit, out=out
            )
        from veil.demo.run import Demo

        demo = Demo(
            root=root,
            log_dir=log_dir.resolve(),
            relay_endpoint=arguments.otlp_endpoint,
            relay_traces_only=False,
            jaeger_ui=None,
            out=out,
        )
        return demo.run(startup_timeout=arguments.startup_timeout)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(number: int, frame: FrameType | None) -> None:
    """SIGTERM ends the demo like Ctrl-C: the services are stopped on the way out."""
    raise KeyboardInterrupt
