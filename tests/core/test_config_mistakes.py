"""Configuration mistakes that used to slip through: each is one ConfigurationError naming the closest value."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import veil
from veil import instrumentation
from veil.errors import ConfigurationError
from veil.settings import Settings

BIN = Path(sys.executable).parent


def _error(**environ: str) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as raised:
        Settings.load(environ=environ)
    return raised.value


@pytest.mark.parametrize(("value", "closest"), [("flaskk", "flask"), ("requests,djang", "django")])
def test_a_misspelt_disabled_instrumentation_is_an_error(value: str, closest: str) -> None:
    error = _error(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=value)
    assert error.variable == "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
    assert error.closest == closest
    assert str(error).endswith(f"did you mean {closest!r}?")
    assert error.accepted.startswith("one of ")  # the known names (veil's and upstream's) are too many to list


def test_known_disabled_instrumentations_are_accepted() -> None:
    names = sorted(instrumentation.available())
    assert names, "veil's instrumentations are registered"
    value = f" {names[0]} , {names[-1]},{names[0]}"
    loaded = Settings.load(environ={"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": value})
    assert loaded.disabled_instrumentations == (names[0], names[-1])
    assert Settings.load(environ={"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*"}).disabled_instrumentations == ("*",)


def test_upstream_names_not_installed_here_are_accepted() -> None:
    """A fleet-wide value may name instrumentations this service does not have installed (celery, pymongo,
    gRPC's entry points): those are known names, not typos."""
    value = "celery,pymongo,grpc_client,system_metrics,tortoiseorm"
    loaded = Settings.load(environ={"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": value})
    assert loaded.disabled_instrumentations == tuple(value.split(","))
    assert _error(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="celeryy").closest == "celery"


def test_veil_run_stops_on_a_misspelt_disabled_instrumentation(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_"))}
    env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "flaskk"
    result = subprocess.run(
        [str(BIN / "veil"), "run", "--", sys.executable, "-c", "print('app ran')"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 2
    assert "app ran" not in result.stdout
    assert "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS='flaskk' is invalid" in result.stdout + result.stderr
    assert "did you mean 'flask'?" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("log_format", "field", "closest"),
    [("%(nosuch)s", "nosuch", None), ("%(asctime)s %(levelnam)s %(message)s", "levelnam", "levelname")],
)
def test_a_log_format_with_an_unknown_field_fails_at_start_up(log_format: str, field: str, closest: str | None) -> None:
    error = _error(OTEL_PYTHON_LOG_FORMAT=log_format)
    assert error.variable == "OTEL_PYTHON_LOG_FORMAT"
    assert f"unknown field {field!r}" in str(error)
    assert (f"did you mean {closest!r}" in str(error)) is (closest is not None)


def test_a_log_format_with_a_wrong_conversion_fails_at_start_up() -> None:
    assert "real number is required" in str(_error(OTEL_PYTHON_LOG_FORMAT="%(message)d"))


def test_a_log_format_with_the_trace_fields_is_accepted() -> None:
    log_format = (
        "%(asctime)s %(levelname)s [%(name)s] %(trace_id)s %(span_id)s %(trace_flags)s %(service_name)s "
        "%(otelTraceID)s %(otelSpanID)s %(otelServiceName)s %(otelTraceSampled)s %(message)s %%"
    )
    assert Settings.load(environ={"OTEL_PYTHON_LOG_FORMAT": log_format}).log_format == log_format


def test_an_unknown_keyword_suggests_the_closest_instead_of_listing_all() -> None:
    before = veil.telemetry.installed()
    with pytest.raises(ConfigurationError) as raised:
        veil.configure(service="x")
    error = raised.value
    assert error.closest == "service_name"
    assert str(error).endswith("did you mean 'service_name'?")
    assert "traces_sampler_arg" not in str(error)  # not the ~80 other names
    assert veil.telemetry.installed() is before  # nothing half-configured


def test_a_misspelt_name_in_a_list_is_matched_on_its_own() -> None:
    error = _error(OTEL_TRACES_EXPORTER="otlp,consol")
    assert error.closest == "console"
    assert _error(OTEL_TRACES_EXPORTER="jager").closest == "jaeger"
    assert _error(OTEL_PROPAGATORS="tracecontext,none").closest is None  # not a misspelling: no guess


def test_opentelemetry_instrument_stops_on_an_unknown_propagator_before_veil_can_run(tmp_path: Path) -> None:
    """The upstream launcher imports opentelemetry.propagate, which raises at import for an unknown name,
    before any distro is loaded (documented in docs/getting-started.md); `veil run` checks it first."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_"))}
    env.update(OTEL_PROPAGATORS="tracecontext,b4", OTEL_TRACES_EXPORTER="none")
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent("print('app ran')\n"))

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=90, check=False)

    launched = run(str(BIN / "opentelemetry-instrument"), sys.executable, str(app))
    assert launched.returncode == 1
    assert "app ran" not in launched.stdout
    assert "ValueError: Propagator b4 not found" in launched.stderr
    assert str(Path(veil.__file__).parent) not in launched.stderr  # no frame of veil's: it never ran
    checked = run(str(BIN / "veil"), "run", "--", sys.executable, str(app))
    assert checked.returncode == 2
    assert "OTEL_PROPAGATORS='tracecontext,b4' is invalid (unknown name 'b4')" in checked.stdout + checked.stderr
