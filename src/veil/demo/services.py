"""Starting and stopping the shop's three services as local processes, leaving nothing behind.

Each service runs in its own process group (its own session on POSIX), so the terminal's Ctrl-C reaches only
the demo, which then stops every group: SIGINT first (the servers shut down and veil flushes at exit), then
SIGTERM, then SIGKILL, each within a bound. On Linux a service also gets SIGTERM when the demo dies without
cleaning up (parent-death signal). Output goes to one log file per service.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["Service", "ServiceError", "Supervisor", "free_ports", "service_commands", "tail"]

_POSIX = os.name == "posix"


class ServiceError(Exception):
    """A service did not start; the message names it and its log file."""


@dataclass
class Service:
    """One service: its name, how it is launched (shown to the user), its port and log file."""

    name: str
    how: str  # "veil.configure()", "opentelemetry-instrument", "veil run"
    command: list[str]
    display: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held together while chosen, so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _script(name: str) -> str | None:
    """A console script installed next to this interpreter (the virtualenv's), else one on PATH."""
    directory = Path(sys.executable).parent
    for candidate in (directory / name, directory / f"{name}.exe"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)


def service_commands(python: str = sys.executable) -> dict[str, tuple[str, list[str], str]]:
    """For each service: (how veil is added, the command, the command as shown to a reader)."""
    instrument = _script("opentelemetry-instrument")
    launcher = (
        [instrument]
        if instrument
        else [python, "-c", "from opentelemetry.instrumentation.auto_instrumentation import run; run()"]
    )
    veil_script = _script("veil")
    veil_run = [veil_script, "run"] if veil_script else [python, "-m", "veil.cli", "run"]
    return {
        "gateway": ("veil.configure()", [python, "-m", "examples.shop.gateway"], "python -m examples.shop.gateway"),
        "inventory": (
            "opentelemetry-instrument",
            [*launcher, python, "-m", "examples.shop.inventory"],
            "opentelemetry-instrument python -m examples.shop.inventory",
        ),
        "payments": (
            "veil run",
            [*veil_run, "--service-name", "payments", "--", python, "-m", "examples.shop.payments"],
            "veil run --service-name payments -- python -m examples.shop.payments",
        ),
    }


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with the demo, even if it is killed


class Supervisor:
    """Starts services, waits for them to listen, and stops them all (also at interpreter exit)."""

    def __init__(self, services: Sequence[Service], cwd: Path) -> None:
        self.services = list(services)
        self._cwd = cwd
        self._stopped = False
        atexit.register(self.kill_all)

    def start(self, base_env: Mapping[str, str]) -> None:
        for service in self.services:
            env = dict(base_env)
            env.update(service.env)
            service.log_path.parent.mkdir(parents=True, exist_ok=True)
            service._log_file = open(service.log_path, "wb")  # noqa: SIM115 - closed in stop_all
            options: dict[str, object] = {}
            if _POSIX:
                options["start_new_session"] = True
                options["preexec_fn"] = _child_setup
            else:  # pragma: no cover - Windows
                options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
            service.process = subprocess.Popen(
                service.command,
                cwd=self._cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=service._log_file,
                stderr=subprocess.STDOUT,
                **options,  # type: ignore[call-overload]
            )

    def wait_ready(self, timeout: float) -> None:
        """Wait until every service accepts connections; ServiceError names the first that cannot."""
        deadline = time.monotonic() + timeout
        pending = list(self.services)
        while pending:
            for service in list(pending):
                assert service.process is not None
                code = service.process.poll()
                if code is not None:
                    raise ServiceError(
                        f"the {service.name} service ({service.display}) exited with code {code} before it was "
                        f"ready; its output is in {service.log_path}"
                    )
                if _listening(service.port):
                    pending.remove(service)
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(f"{service.name} (log: {service.log_path})" for service in pending)
                raise ServiceError(f"not listening after {timeout:g} s: {names}")
            time.sleep(0.05)

    def stop_all(self, graceful_timeout: float = 8.0) -> dict[str, int | None]:
        """Stop every service: SIGINT, then SIGTERM, then SIGKILL to its process group. Returns exit codes."""
        if self._stopped:
            return {service.name: _code(service) for service in self.services}
        self._stopped = True
        try:
            self._signal_all(signal.SIGINT if _POSIX else None)
            if not self._wait_all(graceful_timeout):
                self._signal_all(signal.SIGTERM if _POSIX else None)
                if not self._wait_all(2.0):
                    self.kill_all()
        except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
            self.kill_all()
        finally:
            self._reap()
        return {service.name: _code(service) for service in self.services}

    def kill_all(self) -> None:
        """SIGKILL every group still running (the last resort, also registered with atexit)."""
        for service in self.services:
            process = service.process
            if process is None or process.poll() is not None:
                continue  # an exited (reaped) leader's id may belong to someone else by now
            if _POSIX:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            else:  # pragma: no cover - Windows
                process.kill()
        self._reap()

    def alive(self) -> list[str]:
        return [s.name for s in self.services if s.process is not None and s.process.poll() is None]

    def _signal_all(self, number: signal.Signals | None) -> None:
        for service in self.services:
            process = service.process
            if process is None or process.poll() is not None:
                continue
            if number is None:  # pragma: no cover - Windows
                process.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, number)

    def _wait_all(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for service in self.services:
            process = service.process
            if process is None:
                continue
            try:
                process.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                return False
        return True

    def _reap(self) -> None:
        for service in self.services:
            process = service.process
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(1.0)
            if service._log_file is not None:
                service._log_file.close()
                service._log_file = None


def _code(service: Service) -> int | None:
    return None if service.process is None else service.process.poll()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> Iterable[str]:
    """The last `lines` lines of a log file (for the message when a service fails)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
