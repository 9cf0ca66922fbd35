"""The opentelemetry-instrument launcher and `veil run` load veil as the distro, in a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.otlp import OTLPReceiver
from veil import instrumentation
from veil.distro import VeilDistro, _result

BIN = Path(sys.executable).parent

APP = """
    import sys
    from opentelemetry import trace
    with trace.get_tracer("app").start_as_current_span("app-work") as span:
        span.set_attribute("argv", len(sys.argv))
    print("app ran", trace.get_tracer_provider().__class__.__name__)
"""


@pytest.fixture
def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(APP))
    return path


def _env(receiver: OTLPReceiver, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_"))}
    env.update(
        OTEL_SERVICE_NAME="launched",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_endpoint,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_PYTHON_DISTRO="veil",
        OTEL_PYTHON_CONFIGURATOR="veil",
    )
    env.update(extra)
    return env


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=90, check=False)


def test_opentelemetry_instrument_uses_veil(app: Path, otlp_receiver: OTLPReceiver) -> None:
    result = _run([str(BIN / "opentelemetry-instrument"), sys.executable, str(app)], _env(otlp_receiver), app.parent)
    assert result.returncode == 0, result.stderr
    assert "app ran TracerProvider" in result.stdout
    (span,) = otlp_receiver.wait_for_spans(1, timeout=15)
    assert span.name == "app-work"
    assert span.resource["service.name"] == "launched"
    assert span.resource["telemetry.distro.name"] == "veil"


def test_veil_run_prints_a_report_and_exports(app: Path, otlp_receiver: OTLPReceiver) -> None:
    env = _env(otlp_receiver, OTEL_EXPORTER_OTLP_HEADERS="api-key=topsecret")
    del env["OTEL_PYTHON_DISTRO"], env["OTEL_PYTHON_CONFIGURATOR"]
    command = [str(BIN / "veil"), "run", "--service-name", "via-veil-run", "--", sys.executable, str(app)]
    result = _run(command, env, app.parent)
    assert result.returncode == 0, result.stderr
    assert "app ran TracerProvider" in result.stdout
    report = result.stderr
    assert "service via-veil-run" in report
    assert f"otlp (http/protobuf) -> {otlp_receiver.http_endpoint}/v1/traces" in report
    assert "api-key=****" in report and "topsecret" not in report
    assert "propagators:  tracecontext, baggage" in report
    (span,) = otlp_receiver.wait_for_spans(1, timeout=15)
    assert span.resource["service.name"] == "via-veil-run"


def test_veil_run_rejects_bad_configuration_before_starting(app: Path, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "jager"}
    command = [str(BIN / "veil"), "run", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    result = _run(command, env, tmp_path)
    assert result.returncode == 2
    assert "OTEL_TRACES_EXPORTER='jager' is invalid" in result.stderr
    assert "accepted: console, jaeger, none, otlp, zipkin" in result.stderr
    assert not marker.exists()


def test_veil_run_without_a_command() -> None:
    result = _run([str(BIN / "veil"), "run"], dict(os.environ), Path.cwd())
    assert result.returncode == 2 and "give the program to run" in result.stderr


@pytest.fixture
def configured_for_launcher(configure_veil: Any) -> None:
    configure_veil(traces_exporter="none")


def test_distro_skips_an_upstream_instrumentor_that_veil_replaces(configured_for_launcher: None) -> None:
    ours = instrumentation.available()
    if not ours:
        pytest.skip("no veil instrumentation is registered")
    name = sorted(ours)[0]
    upstream = EntryPoint(name=name, value="opentelemetry.instrumentation.nonexistent:Never", group="x")
    # Loading the upstream entry point would raise ImportError: being skipped is what makes this pass.
    VeilDistro().load_instrumentor(upstream)
    assert "veil instruments" in _result.replaced[name]


def test_distro_lets_upstream_instrumentors_for_other_libraries_run(configured_for_launcher: None) -> None:
    upstream = EntryPoint(name="not-covered-by-veil", value="tests.core.fake_instrumentor:Fake", group="x")
    VeilDistro().load_instrumentor(upstream)
    from tests.core.fake_instrumentor import Fake

    assert Fake.calls == 1


def test_veil_config_validates_and_reports(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_"))}
    good = _run([str(BIN / "veil"), "config"], {**env, "OTEL_SERVICE_NAME": "cfg"}, tmp_path)
    assert good.returncode == 0, good.stderr
    assert "service cfg" in good.stdout and "redaction:    on" in good.stdout
    bad = _run([str(BIN / "veil"), "config"], {**env, "OTEL_PROPAGATORS": "w3c"}, tmp_path)
    assert bad.returncode == 2
    assert "OTEL_PROPAGATORS='w3c' is invalid" in bad.stderr


def test_veil_scan_takes_its_own_options(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("ok\nuser password=hunter2 logged in\n")
    found = _run([str(BIN / "veil"), "scan", "--quiet", str(log)], dict(os.environ), tmp_path)
    assert found.returncode == 1
    assert "hunter2" not in found.stdout + found.stderr
    assert _run([str(BIN / "veil"), "scan", "--help"], dict(os.environ), tmp_path).returncode == 0


def test_a_failing_upstream_instrumentor_does_not_stop_the_launcher(configured_for_launcher: None) -> None:
    broken = EntryPoint(name="broken-upstream", value="tests.core.fake_instrumentor:Raising", group="x")
    VeilDistro().load_instrumentor(broken)
    assert "failed" in _result.skipped["broken-upstream"]


@pytest.mark.parametrize(
    ("variable", "value", "note"),
    [("OTEL_TRACES_EXPORTER", "bogus", "configuration failed"), ("OTEL_SDK_DISABLED", "true", "")],
)
def test_launcher_instruments_nothing_when_veil_is_off(
    app: Path, otlp_receiver: OTLPReceiver, variable: str, value: str, note: str
) -> None:
    probe = "import urllib.request as r\nprint('urlopen wrapped:', hasattr(r.OpenerDirector.open, '__wrapped__'))"
    app.write_text(app.read_text() + "\n" + probe + "\n")
    env = _env(otlp_receiver, **{variable: value})
    result = _run([str(BIN / "opentelemetry-instrument"), sys.executable, str(app)], env, app.parent)
    assert result.returncode == 0, result.stderr
    assert "urlopen wrapped: False" in result.stdout
    assert result.stderr.count("Traceback") == 0, result.stderr
    if note:
        assert result.stderr.count(note) == 1, result.stderr
