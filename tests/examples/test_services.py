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


def test_demo_jaeger_without_a_binary_says_how_to_get_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from veil.demo import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no `jaeger` on PATH
    monkeypatch.setenv("VEIL_PEERS_CACHE", str(tmp_path / "empty-cache"))
    assert main(["--jaeger"]) == 2
    error = capsys.readouterr().err
    assert "no Jaeger binary was found" in error
    assert "bash tests/peers/build.sh" in error and "docker-compose.yml" in error and "--jaeger-binary" in error
    assert main(["--jaeger", "--jaeger-binary", str(tmp_path / "missing")]) == 2
    assert "missing is not an executable file" in capsys.readouterr().err
    assert main(["--exit"]) == 2
    assert "go with --jaeger" in capsys.readouterr().err


def test_the_demo_finds_jaeger_on_path_then_in_the_peer_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from veil.demo.jaeger import find_jaeger_binary

    def executable(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
        return path

    cache = tmp_path / "cache"
    monkeypatch.setenv("VEIL_PEERS_CACHE", str(cache))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert find_jaeger_binary() is None
    plain = executable(cache / "jaeger-v1.75.0" / "jaeger")
    assert find_jaeger_binary() == plain
    with_ui = executable(cache / "jaeger-v1.75.0-ui" / "jaeger")
    assert find_jaeger_binary() == with_ui  # a build with the UI first
    on_path = executable(tmp_path / "bin" / "jaeger")
    assert find_jaeger_binary() == on_path
    assert find_jaeger_binary(plain) == plain  # --jaeger-binary wins
    assert find_jaeger_binary(tmp_path / "bin") is None  # a directory is not a binary
