"""A local Jaeger v2 for `veil demo --jaeger` and the peer tests: find the binary, start it on 127.0.0.1.

The binary comes from `--jaeger-binary`, from PATH (`jaeger`), or from the peer cache that
tests/peers/build.sh fills (`$VEIL_PEERS_CACHE`, default ~/.cache/veil-peers). It runs the shop's Jaeger
configuration (examples/shop/compose/jaeger.yaml: memory storage, OTLP gRPC and HTTP, Zipkin, query API and UI,
health check), the same file docker compose mounts, with every port a free 127.0.0.1 port chosen here.
The process runs in its own session, dies with its parent on Linux, and `stop()` leaves nothing running.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from veil.demo.services import Service, ServiceError, Supervisor, free_ports, tail

__all__ = [
    "CONFIG_PATH",
    "HOW_TO_GET_JAEGER",
    "JaegerPorts",
    "LocalJaeger",
    "find_jaeger_binary",
    "peer_cache",
    "run_with_jaeger",
]

# The configuration, relative to a checkout (the demo's examples root).
CONFIG_PATH = Path("examples") / "shop" / "compose" / "jaeger.yaml"
HOW_TO_GET_JAEGER = (
    "build one with `bash tests/peers/build.sh` from a checkout of veil (needs Go; it goes to "
    "~/.cache/veil-peers/, where the demo finds it), put a Jaeger v2 `jaeger` binary on PATH, or name one with "
    "--jaeger-binary PATH; with Docker instead, run examples/shop/docker-compose.yml, or Jaeger alone "
    "and `veil demo --otlp-endpoint http://localhost:4318`"
)
# Shown by a Jaeger built from its Go module without the separately built UI.
_PLACEHOLDER_MARK = "This is not the Jaeger UI"


def peer_cache() -> Path:
    """Where tests/peers/build.sh puts the peer servers."""
    configured = os.environ.get("VEIL_PEERS_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "veil-peers"


def find_jaeger_binary(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The Jaeger binary to run: `explicit` when given (None if it is not an executable file), else `jaeger`
    on PATH, else the newest build in the peer cache (one with the UI embedded first)."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        return path if path.is_file() and os.access(path, os.X_OK) else None
    on_path = shutil.which("jaeger")
    if on_path:
        return Path(on_path)
    cache = peer_cache()
    builds = sorted(cache.glob("jaeger-*/jaeger"), key=lambda path: path.stat().st_mtime, reverse=True)
    builds.sort(key=lambda path: not path.parent.name.endswith("-ui"))  # stable: UI builds first
    return next((path for path in builds if os.access(path, os.X_OK)), None)


@dataclass(frozen=True)
class JaegerPorts:
    """The 127.0.0.1 ports one Jaeger listens on."""

    otlp_grpc: int
    otlp_http: int
    zipkin: int
    query_http: int
    query_grpc: int
    health: int

    def environment(self) -> dict[str, str]:
        """The variables examples/shop/compose/jaeger.yaml reads."""
        return {
            "JAEGER_LISTEN_HOST": "127.0.0.1",
            "JAEGER_OTLP_GRPC_PORT": str(self.otlp_grpc),
            "JAEGER_OTLP_HTTP_PORT": str(self.otlp_http),
            "JAEGER_ZIPKIN_PORT": str(self.zipkin),
            "JAEGER_QUERY_HTTP_PORT": str(self.query_http),
            "JAEGER_QUERY_GRPC_PORT": str(self.query_grpc),
            "JAEGER_HEALTH_PORT": str(self.health),
        }


class LocalJaeger:
    """One Jaeger all-in-one process with the shop's configuration, on free loopback ports."""

    def __init__(self, binary: Path, config: Path, log_path: Path) -> None:
        self.binary = binary
        self.config = config
        self.log_path = log_path
        self.ports = JaegerPorts(*free_ports(6))
        self._supervisor: Supervisor | None = None

    # -- addresses -----------------------------------------------------------------------------------------

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.otlp_http}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.otlp_grpc}"

    @property
    def zipkin_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.zipkin}/api/v2/spans"

    @property
    def ui_url(self) -> str:
        """The UI, and the query API under /api/."""
        return f"http://127.0.0.1:{self.ports.query_http}"

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> LocalJaeger:
        """Start Jaeger and wait until it reports healthy; ServiceError (naming the log) when it cannot."""
        service = Service(
            name="jaeger",
            how="jaeger binary",
            command=[str(self.binary), "--config", str(self.config)],
            display=f"{self.binary} --config {self.config}",
            port=self.ports.query_http,
            env=self.ports.environment(),
            log_path=self.log_path,
        )
        self._supervisor = Supervisor([service], self.config.parent)
        self._supervisor.start(dict(os.environ))
        self._supervisor.wait_ready(timeout)
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if not self.running:
                raise ServiceError(f"Jaeger exited before it was healthy; its output is in {self.log_path}")
            if time.monotonic() > deadline:
                raise ServiceError(f"Jaeger was not healthy after {timeout:g} s; its output is in {self.log_path}")
            time.sleep(0.1)
        return self

    @property
    def running(self) -> bool:
        return self._supervisor is not None and bool(self._supervisor.alive())

    def stop(self) -> int | None:
        """Stop Jaeger (SIGINT, then SIGTERM, then SIGKILL); returns its exit code."""
        if self._supervisor is None:
            return None
        codes = self._supervisor.stop_all(graceful_timeout=5.0)
        return codes.get("jaeger")

    def __enter__(self) -> LocalJaeger:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 15) -> list[str]:
        return list(tail(self.log_path, lines))

    # -- queries -------------------------------------------------------------------------------------------

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports.health}/status", timeout=1.0) as response:
                status = json.loads(response.read().decode("utf-8"))
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return isinstance(status, dict) and status.get("healthy") is True

    def has_ui(self) -> bool:
        """Whether this binary serves the Jaeger UI (a build from the Go module alone serves a placeholder)."""
        try:
            with urllib.request.urlopen(self.ui_url + "/", timeout=2.0) as response:
                page = response.read(65536).decode("utf-8", "replace")
        except (OSError, urllib.error.URLError):
            return False
        return _PLACEHOLDER_MARK not in page


def run_with_jaeger(binary: Path, root: Path, log_dir: Path, startup_timeout: float, *, wait: bool, out: TextIO) -> int:
    """`veil demo --jaeger`: start Jaeger, run the demo relaying its traces there, print where to look, then
    keep Jaeger running until Ctrl-C (`wait`) or stop it. Returns the demo's exit code."""
    from veil.demo.run import Demo

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    jaeger = LocalJaeger(binary, root / CONFIG_PATH, log_dir / "jaeger.log")
    say(f"veil demo: starting Jaeger ({binary}) on 127.0.0.1 with {CONFIG_PATH}")
    try:
        try:
            jaeger.start(startup_timeout)
        except ServiceError as error:
            say(f"veil demo: {error}")
            for line in jaeger.log_tail():
                say(f"    {line}")
            return 1
        say(f"  Jaeger UI and query API: {jaeger.ui_url}   OTLP/HTTP: {jaeger.otlp_http_endpoint}\n")
        demo = Demo(
            root=root,
            log_dir=log_dir,
            relay_endpoint=jaeger.otlp_http_endpoint,
            relay_traces_only=True,
            jaeger_ui=jaeger.ui_url,
            out=out,
        )
        code = demo.run(startup_timeout=startup_timeout)
        if code == 130:
            return code
        say("\nThe traces in Jaeger:")
        for result in demo.results:
            if result.trace_id:
                say(f"  {result.scenario.name:<15} {jaeger.ui_url}/trace/{result.trace_id}")
        say(f"  all of gateway's:  {jaeger.ui_url}/search?service=gateway")
        say(f"  the service graph: {jaeger.ui_url}/dependencies")
        if not jaeger.has_ui():
            say(
                "  (this Jaeger binary was built without its UI -- a build from the Go module alone has none -- so "
                "those pages show a placeholder; the same data is in the query API, e.g. "
                f"{jaeger.ui_url}/api/traces/<trace id>. Jaeger's release binaries and images include the UI.)"
            )
        if not wait:
            return code
        say(f"\nJaeger keeps running (its log: {jaeger.log_path}); press Ctrl-C to stop it.")
        try:
            while jaeger.running:
                time.sleep(0.5)
        except KeyboardInterrupt:  # the way to end it: the demo's own result stands
            say("\nveil demo: stopping Jaeger")
            return code
        say(f"veil demo: Jaeger exited by itself; see {jaeger.log_path}")
        return 1
    except KeyboardInterrupt:
        say("\nveil demo: interrupted; stopping Jaeger")
        return 130
    finally:
        jaeger.stop()
