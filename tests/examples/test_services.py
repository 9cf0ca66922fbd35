"""The demo's process supervisor: a service that fails to start is named with its log, and stopping leaves
no process behind -- not even a grandchild, nor one that ignores SIGINT."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from veil.demo import find_examples_root
from veil.demo.services import Service, ServiceError, Supervisor, free_ports, service_commands, tail

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and signals are POSIX")

# Starts a grandchild that sleeps, writes both pids, then listens on SHOP_PORT until told to stop.
_LISTENER = """
import os, signal, socket, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(sys.argv[1] + ".tmp", "w") as file:
    file.write(f"{os.getpid()} {grandchild.pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
if len(sys.argv) > 2:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
server = socket.socket()
server.bind(("127.0.0.1", int(os.environ["SHOP_PORT"])))
server.listen()
time.sleep(60)
"""


def _service(tmp_path: Path, name: str, command: list[str], port: int) -> Service:
    return Service(name, "test", command, " ".join(command), port, {"SHOP_PORT": str(port)}, tmp_path / f"{name}.log")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone (the id may now be someone else's)
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _wait_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


def test_a_service_that_exits_is_named_with_its_log(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    command = [sys.executable, "-c", "import sys; print('boom: no database'); sys.exit(3)"]
    supervisor = Supervisor([_service(tmp_path, "payments", command, port)], tmp_path)
    supervisor.start(dict(os.environ))
    try:
        with pytest.raises(ServiceError) as caught:
            supervisor.wait_ready(timeout=20)
    finally:
        supervisor.stop_all()
    message = str(caught.value)
    assert "payments" in message and "code 3" in message and str(tmp_path / "payments.log") in message
    assert list(tail(tmp_path / "payments.log")) == ["boom: no database"]


def test_a_service_that_never_listens_times_out_by_name(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    supervisor = Supervisor(
        [_service(tmp_path, "inventory", [sys.executable, "-c", "import time; time.sleep(30)"], port)], tmp_path
    )
    supervisor.start(dict(os.environ))
    started = time.monotonic()
    try:
        with pytest.raises(ServiceError, match=r"not listening after 0\.5 s: inventory \(log: "):
            supervisor.wait_ready(timeout=0.5)
    finally:
        supervisor.stop_all(graceful_timeout=2)
    assert time.monotonic() - started < 15  # bounded, with a wide margin
    assert supervisor.alive() == []


@pytest.mark.parametrize("ignores_sigint", [False, True])
def test_stop_all_ends_the_whole_process_group(tmp_path: Path, ignores_sigint: bool) -> None:
    ports = free_ports(2)
    services = []
    for index, port in enumerate(ports):
        command = [sys.executable, "-c", _LISTENER, str(tmp_path / f"pids{index}")]
        if ignores_sigint:
            command.append("ignore-sigint")
        services.append(_service(tmp_path, f"service{index}", command, port))
    supervisor = Supervisor(services, tmp_path)
    supervisor.start(dict(os.environ))
    supervisor.wait_ready(timeout=20)
    deadline = time.monotonic() + 10
    while not all((tmp_path / f"pids{index}").exists() for index in range(2)) and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(pid) for index in range(2) for pid in (tmp_path / f"pids{index}").read_text().split()]
    assert len(pids) == 4 and all(_alive(pid) for pid in pids), pids

    codes = supervisor.stop_all(graceful_timeout=1.0)

    assert set(codes) == {"service0", "service1"} and all(code is not None for code in codes.values()), codes
    assert _wait_gone(pids) == []


def test_the_commands_show_the_three_ways_to_add_veil() -> None:
    commands = service_commands()
    assert [how for how, _, _ in commands.values()] == ["veil.configure()", "opentelemetry-instrument", "veil run"]
    assert commands["payments"][2].startswith("veil run --service-name payments -- python -m ")
    assert find_examples_root() == Path(__file__).resolve().parents[2]


def test_veil_demo_is_a_subcommand_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    from veil.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["demo", "--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    assert all(option in usage for option in ("--otlp-endpoint", "--jaeger", "--log-dir", "--startup-timeout"))


def test_bad_demo_options_are_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    from veil.demo import main

    assert main(["--otlp-endpoint", "localhost:4318"]) == 2
    assert "http:// or https://" in capsys.readouterr().err
    assert main(["--jaeger", "--otlp-endpoint", "http://localhost:4318"]) == 2
