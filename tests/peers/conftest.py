"""Session fixtures: one real Jaeger v2 and one real Zipkin server for all of tests/peers/, stopped at the end.

Without the peers (no `bash tests/peers/build.sh` yet) the tests skip with one line saying how to get them;
under VEIL_REQUIRE_PEERS=1 (.ci/run) they fail instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peer_required import missing_peer
from tests.peers.servers import BUILD_HINT, JAEGER_CONFIG, LocalZipkin, jaeger_binary, java_17, versions, zipkin_jar
from veil.demo.jaeger import LocalJaeger


def start_jaeger(log_dir: Path, name: str = "jaeger") -> LocalJaeger:
    """A new Jaeger on free ports (the caller stops it); skips or fails when the binary is missing."""
    binary = jaeger_binary()
    if binary is None:
        missing_peer(f"Jaeger {versions()['JAEGER_VERSION']}", BUILD_HINT)
    assert binary is not None
    return LocalJaeger(binary, JAEGER_CONFIG, log_dir / f"{name}.log").start()


def new_zipkin(log_dir: Path) -> LocalZipkin:
    """A Zipkin server on a free port, not started; skips or fails when Java 17+ or the jar is missing."""
    jar = zipkin_jar()
    java = java_17()
    if jar is None or java is None:
        missing = "Java 17 or newer" if java is None else "the Zipkin server jar"
        missing_peer(f"Zipkin {versions()['ZIPKIN_VERSION']} ({missing})", BUILD_HINT)
    assert jar is not None and java is not None
    return LocalZipkin(java, jar, log_dir / "zipkin.log")


@pytest.fixture(scope="session")
def peer_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="session")
def jaeger(peer_logs: Path) -> Iterator[LocalJaeger]:
    server = start_jaeger(peer_logs)
    try:
        yield server
    finally:
        server.stop()
        assert not server.running


@pytest.fixture(scope="session")
def zipkin(peer_logs: Path) -> Iterator[LocalZipkin]:
    server = new_zipkin(peer_logs).start()
    try:
        yield server
    finally:
        server.stop()
        assert not server.running
