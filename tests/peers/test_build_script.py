"""tests/peers/build.sh says which registry or checksum database did not answer, and exits non-zero.

Each case points the client at a closed 127.0.0.1 port (nothing leaves the machine), with empty caches in a
temporary directory so nothing cached can stand in for the download.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.peer_required import missing_peer
from tests.peers.servers import ROOT, versions
from veil.demo.services import free_ports

pytestmark = pytest.mark.timeout(120)

SCRIPT = ROOT / "tests" / "peers" / "build.sh"


def _run(*peers: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *peers], capture_output=True, text=True, env=env, timeout=100, check=False
    )


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(VEIL_PEERS_CACHE=str(tmp_path / "peers"), GOMODCACHE=str(tmp_path / "gomod"), **extra)
    env.pop("GOFLAGS", None)
    return env


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        missing_peer("Go", "install a Go toolchain (tests/peers/build.sh builds Jaeger with it)")
    assert go is not None
    return go


def _cleanup(tmp_path: Path) -> None:
    """The Go module cache is read-only; make it removable."""
    for directory, _, _ in os.walk(tmp_path):
        os.chmod(directory, 0o755)


def test_an_unreachable_go_module_proxy_is_named(tmp_path: Path) -> None:
    _go()
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"
    completed = _run("jaeger", env=_environment(tmp_path, GOPROXY=closed))
    _cleanup(tmp_path)
    assert completed.returncode != 0
    assert f"the Go module proxy (GOPROXY={closed}) did not answer or refused" in completed.stderr
    assert "connection refused" in completed.stderr
    assert not (tmp_path / "peers" / f"jaeger-{versions()['JAEGER_VERSION']}" / "jaeger").exists()


def test_an_unreachable_checksum_database_is_named(tmp_path: Path) -> None:
    go = _go()
    # The module itself comes from the local module cache (as a file:// proxy); only the checksum database is away.
    download = Path(
        subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    )
    download = download / "cache" / "download"
    if not (
        download / "github.com" / "jaegertracing" / "jaeger" / "@v" / f"{versions()['JAEGER_VERSION']}.zip"
    ).exists():
        missing_peer("the Jaeger module in Go's module cache", "run `bash tests/peers/build.sh` first")
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"
    env = _environment(tmp_path, GOPROXY=f"file://{download}", GOSUMDB=f"sum.golang.org {closed}")
    completed = _run("jaeger", env=env)
    _cleanup(tmp_path)
    assert completed.returncode != 0
    assert f"the Go checksum database (GOSUMDB=sum.golang.org {closed}) did not answer or refused" in completed.stderr


def test_no_go_toolchain_is_said_in_one_line(tmp_path: Path) -> None:
    env = _environment(tmp_path, PATH="/usr/bin:/bin")
    if shutil.which("go", path=env["PATH"]):
        pytest.skip("go is installed in /usr/bin")
    completed = _run("jaeger", env=env)
    assert completed.returncode != 0
    assert "Jaeger: no Go toolchain on PATH" in completed.stderr


def test_an_unreachable_maven_repository_is_named(tmp_path: Path) -> None:
    if shutil.which("mvn") is None or shutil.which("java") is None:
        missing_peer("Maven and Java", "install a JDK 17 and Maven (tests/peers/build.sh fetches Zipkin with them)")
    home = tmp_path / "home"
    (home / ".m2").mkdir(parents=True)
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"
    (home / ".m2" / "settings.xml").write_text(
        "<settings><mirrors><mirror><id>closed</id><mirrorOf>*</mirrorOf>"
        f"<url>{closed}/maven2</url></mirror></mirrors></settings>\n"
    )
    # Maven finds ~/.m2 through Java's user.home, not $HOME.
    completed = _run("zipkin", env=_environment(tmp_path, MAVEN_OPTS=f"-Duser.home={home}"))
    assert completed.returncode != 0
    assert "Zipkin: Maven Central (the central repository in Maven's settings) did not answer" in completed.stderr
    assert not list((tmp_path / "peers").glob("zipkin-*/*.jar"))
