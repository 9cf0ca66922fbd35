"""The peer servers of tests/peers/: where build.sh put them, a Zipkin server process, and JSON queries.

Jaeger is started with veil's own launcher (veil.demo.jaeger.LocalJaeger, which `veil demo --jaeger` uses),
Zipkin with the same supervisor, so neither can outlive the session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from veil.demo.jaeger import peer_cache
from veil.demo.services import Service, ServiceError, Supervisor, free_ports

ROOT = Path(__file__).resolve().parents[2]
JAEGER_CONFIG = ROOT / "examples" / "shop" / "compose" / "jaeger.yaml"
BUILD_HINT = "run `bash tests/peers/build.sh` (or `nox -s peers`; needs Go, Java 17+ and Maven)"

T = TypeVar("T")


def versions() -> dict[str, str]:
    """JAEGER_VERSION and ZIPKIN_VERSION from tests/peers/versions.env (build.sh reads the same file)."""
    result = {}
    for line in (Path(__file__).parent / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            result[name.strip()] = value.strip()
    return result


def jaeger_binary() -> Path | None:
    """The approved Jaeger build in the peer cache (with or without the UI), or None."""
    version = versions()["JAEGER_VERSION"]
    for folder in (f"jaeger-{version}", f"jaeger-{version}-ui"):
        binary = peer_cache() / folder / "jaeger"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def zipkin_jar() -> Path | None:
    version = versions()["ZIPKIN_VERSION"]
    jar = peer_cache() / f"zipkin-{version}" / f"zipkin-server-{version}-exec.jar"
    return jar if jar.is_file() else None


def java_17() -> str | None:
    """A `java` of version 17 or newer, or None."""
    java = shutil.which("java")
    if java is None:
        return None
    output = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)', output)
    return java if match and int(match.group(1)) >= 17 else None


class LocalZipkin:
    """The Zipkin server (in-memory storage) on one 127.0.0.1 port; stop() and start() keep the port."""

    def __init__(self, java: str, jar: Path, log_path: Path) -> None:
        self.java = java
        self.jar = jar
        self.log_path = log_path
        self.port = free_ports(1)[0]
        self._supervisor: Supervisor | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def spans_endpoint(self) -> str:
        return f"{self.url}/api/v2/spans"

    def start(self, timeout: float = 90.0) -> LocalZipkin:
        command = [
            self.java,
            "-Xms64m",
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",  # starts faster; these tests are not about throughput
            "-jar",
            str(self.jar),
            "--armeria.ports[0].ip=127.0.0.1",
            f"--armeria.ports[0].port={self.port}",
            "--armeria.ports[0].protocols[0]=http",
        ]
        environment = {"STORAGE_TYPE": "mem", "COLLECTOR_SCRIBE_ENABLED": "false", "SELF_TRACING_ENABLED": "false"}
        service = Service("zipkin", "zipkin server", command, " ".join(command), self.port, environment, self.log_path)
        self._supervisor = Supervisor([service], self.log_path.parent)
        self._supervisor.start(dict(os.environ))
        self._supervisor.wait_ready(timeout)
        if not wait_for(lambda: _status(self.url + "/health") == 200, timeout):
            raise ServiceError(f"Zipkin was not healthy after {timeout:g} s; see {self.log_path}")
        return self

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop_all(graceful_timeout=10.0)
            self._supervisor = None

    @property
    def running(self) -> bool:
        return self._supervisor is not None and bool(self._supervisor.alive())


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None


def get_json(url: str) -> Any:
    """GET `url` and decode its JSON body; None for a 404."""
    try:
        with urllib.request.urlopen(url, timeout=10.0) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def wait_for(condition: Callable[[], T], timeout: float, interval: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy (returned) or `timeout` passes (the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
