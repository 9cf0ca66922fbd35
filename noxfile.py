"""Developer sessions: tests on every Python found, lint, typecheck, docs, benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]


def _runs(version: str) -> bool:
    """Whether `python<version>` is installed and runs (a pyenv shim of an inactive version does not)."""
    executable = shutil.which(f"python{version}")
    if executable is None:
        return False
    return subprocess.run([executable, "--version"], capture_output=True, check=False).returncode == 0


# With pyenv, make every version reachable first: `pyenv global 3.11.7 3.10.13 3.12.1 3.13.0`.
PYTHONS = [version for version in ("3.10", "3.11", "3.12", "3.13") if _runs(version)]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite, as README.md runs it."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


# The oldest and the newest OpenTelemetry SDK that pyproject.toml allows (tests/core/test_sdk_seam.py checks that
# these match it). veil._sdk relies on private SDK names: widen the range there only after `nox -s sdk` passes.
SDK_VERSIONS = ("1.45.1", "1.45.2")
SDK_PACKAGES = (
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-proto",
)


@nox.session
@nox.parametrize("version", SDK_VERSIONS)
def sdk(session: nox.Session, version: str) -> None:
    """The test suite against the oldest and the newest allowed OpenTelemetry SDK (`nox -s sdk`)."""
    session.install("-e", ".[test]", *(f"{package}=={version}" for package in SDK_PACKAGES))
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/veil."""
    session.install("-e", ".[lint]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly (broken links and missing pages fail)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """Every script in benchmarks/ (bare vs veil vs upstream contrib, interleaved, medians and ratios)."""
    session.install("-e", ".[test,bench]")
    for script in sorted(os.listdir("benchmarks")):
        if script.startswith("bench_") and script.endswith(".py"):
            session.run("python", f"benchmarks/{script}", *session.posargs)


@nox.session(python=False)
def peers(session: nox.Session) -> None:
    """Build or fetch the real Jaeger and Zipkin servers of tests/peers/ (cached in ~/.cache/veil-peers)."""
    session.run("bash", "tests/peers/build.sh", external=True)
