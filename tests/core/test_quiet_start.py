"""A quiet, fast start: a library that is not installed is "not present", without a traceback, and libraries
are instrumented on their first import, so start-up imports no framework the program does not use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_", "PYTHON"))}
    env.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    env.update(PYTHONPATH=str(ROOT / "src"), **extra)
    return env


@pytest.fixture(scope="module")
def without_aiohttp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with everything of the test environment except aiohttp (module and metadata), as
    a bare `pip install veil` without the aiohttp extra has it. Returns its bin directory."""
    home = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True, timeout=60)
    source = Path(sysconfig.get_paths()["purelib"])
    (target,) = home.glob("lib/python*/site-packages")
    for entry in source.iterdir():
        if not entry.name.lower().startswith("aiohttp"):
            (target / entry.name).symlink_to(entry)
    return home / "bin"


APP = "print('app ran')\n"


def test_veil_run_without_aiohttp_reports_it_not_present_without_a_traceback(
    without_aiohttp: Path, tmp_path: Path
) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    python = str(without_aiohttp / "python")
    instrument = "from opentelemetry.instrumentation.auto_instrumentation import run; run()"  # opentelemetry-instrument
    for launcher in (["-m", "veil.cli", "run", "--"], ["-c", instrument]):
        env = _clean_env(PATH=os.pathsep.join([str(without_aiohttp), os.environ.get("PATH", "")]))
        if "veil.cli" not in launcher:
            env.update(OTEL_PYTHON_DISTRO="veil", OTEL_PYTHON_CONFIGURATOR="veil", VEIL_STARTUP_REPORT="true")
        result = subprocess.run(
            [python, *launcher, python, str(app)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "app ran\n"
        assert "Traceback" not in result.stderr and "ModuleNotFoundError" not in result.stderr, result.stderr
        (line,) = [line for line in result.stderr.splitlines() if "not present:" in line]
        assert "aiohttp-client" in line, result.stderr
        assert "skipped" not in result.stderr, result.stderr


CONFIGURED = textwrap.dedent(
    """
    import json, sys
    import veil
    from veil import instrumentation
    from veil.report import render
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if "early" in sys.argv:
        import flask
    telemetry = veil.configure()
    memory = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(memory))
    before = {
        "flask_imported": "flask" in sys.modules,
        "pending": sorted(telemetry.instrumented.pending),
        "instrumented": sorted(telemetry.instrumented.instrumented),
        "report": render(telemetry),
    }
    if "uninstrument" in sys.argv:
        instrumentation.uninstrument()
    import flask

    app = flask.Flask("lazy")

    @app.route("/hello")
    def hello():
        return "hello"

    assert app.test_client().get("/hello").get_data() == b"hello"
    print(json.dumps({
        "before": before,
        "spans": [span.name for span in memory.get_finished_spans()],
        "pending": sorted(telemetry.instrumented.pending),
        "instrumented": sorted(telemetry.instrumented.instrumented),
    }))
    """
)


def run_configured(*arguments: str, **env: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", CONFIGURED, *arguments],
        cwd=ROOT,
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome: dict[str, object] = json.loads(result.stdout)
    return outcome


def test_configure_imports_no_framework_and_instruments_flask_on_its_first_import() -> None:
    outcome = run_configured()
    before = outcome["before"]
    assert isinstance(before, dict)
    assert before["flask_imported"] is False
    assert "flask" in before["pending"] and "django" in before["pending"] and "fastapi" in before["pending"]
    assert "flask" not in before["instrumented"]
    assert "pending:      " in before["report"] and "(instrumented on first import)" in before["report"]
    assert outcome["spans"] == ["GET /hello"]
    assert "flask" in outcome["instrumented"] and "flask" not in outcome["pending"]


def test_a_library_imported_before_configure_is_instrumented_at_once() -> None:
    outcome = run_configured("early")
    before = outcome["before"]
    assert isinstance(before, dict)
    assert "flask" in before["instrumented"] and "flask" not in before["pending"]
    assert outcome["spans"] == ["GET /hello"]


def test_a_disabled_library_stays_uninstrumented_when_imported() -> None:
    outcome = run_configured(OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="flask")
    before = outcome["before"]
    assert isinstance(before, dict)
    assert "flask" not in before["pending"] and "django" in before["pending"]
    assert outcome["spans"] == []
    assert "flask" not in outcome["instrumented"]


def test_uninstrument_before_the_first_import_cancels_it() -> None:
    outcome = run_configured("uninstrument")
    assert outcome["spans"] == []
    assert outcome["pending"] == [] and "flask" not in outcome["instrumented"]


SUBMODULE = textwrap.dedent(
    """
    import json
    import sys

    from veil.instrumentation import InstrumentResult, available, load_when_imported

    assert "urllib.request" not in sys.modules
    result = InstrumentResult()
    load_when_imported(available()["urllib"], result)
    import urllib.request  # what httpx or requests' dependencies do long after configure()

    print(json.dumps({"instrumented": sorted(result.instrumented), "skipped": result.skipped}))
    """
)


def test_a_submodule_imported_after_configure_is_instrumented() -> None:
    # The post-import hook runs before importlib binds `urllib.request` to `urllib`: the instrumentor's own
    # `from urllib import request` failed there, and urllib went uninstrumented ("circular import").
    result = subprocess.run(
        [sys.executable, "-c", SUBMODULE],
        cwd=ROOT,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"instrumented": ["urllib"], "skipped": {}}
