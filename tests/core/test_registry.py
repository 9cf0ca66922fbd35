"""The instrumentation registry: loading, dependency checks, skips with reasons, never raising."""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import EntryPoint

import pytest
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from packaging.requirements import Requirement

import veil
from tests.core import fake_instrumentor
from veil import instrumentation
from veil.errors import ConfigurationError
from veil.instrumentation import InstrumentResult


def _entry(name: str, attribute: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"tests.core.fake_instrumentor:{attribute}", group=instrumentation.GROUP)


def test_an_installed_library_is_instrumented_with_its_version() -> None:
    result = InstrumentResult()
    instrumentation.load(_entry("installed", "Installed"), result, tracer_provider="tp")
    try:
        assert result.instrumented["installed"].startswith("pytest ")
        assert fake_instrumentor.Installed.received == {"tracer_provider": "tp"}
    finally:
        fake_instrumentor.Installed().uninstrument()


def test_a_version_conflict_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    result = InstrumentResult()
    with caplog.at_level(logging.DEBUG, logger="veil"):
        instrumentation.load(_entry("wrong", "WrongVersion"), result)
    assert "is installed but veil supports pytest<2" in result.skipped["wrong"]
    assert result.problems() == {"wrong": result.skipped["wrong"]}
    (record,) = [r for r in caplog.records if "wrong" in r.getMessage()]
    assert record.levelno == logging.WARNING


def test_skips_are_logged_after_the_deprecated_logging_alias_is_imported(caplog: pytest.LogCaptureFixture) -> None:
    """Importing `veil.instrumentation.logging` rebinds the package's `logging` global: the registry must not care."""
    importlib.import_module("veil.instrumentation.logging")
    result = InstrumentResult()
    with caplog.at_level(logging.DEBUG, logger="veil"):
        instrumentation.load(_entry("wrong", "WrongVersion"), result)
        instrumentation.load(_entry("missing", "Missing"), result)
    assert [r.levelno for r in caplog.records if "skipped instrumentation" in r.getMessage()] == [
        logging.WARNING,
        logging.DEBUG,
    ]


def test_a_missing_library_is_skipped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    result = InstrumentResult()
    with caplog.at_level(logging.DEBUG, logger="veil"):
        instrumentation.load(_entry("missing", "Missing"), result)
    assert result.skipped["missing"] == "surely-not-installed-library is not installed"
    assert result.absent == {"missing"}
    assert result.problems() == {}
    assert all(r.levelno < logging.WARNING for r in caplog.records)


def test_a_raising_instrumentor_is_skipped_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    result = InstrumentResult()
    instrumentation.load(_entry("raising", "Raising"), result)
    assert "instrumentation bug" in result.skipped["raising"]
    assert "raising" not in result.instrumented


def test_an_import_error_is_skipped() -> None:
    result = InstrumentResult()
    broken = EntryPoint(name="broken", value="tests.core.no_such_module:X", group=instrumentation.GROUP)
    instrumentation.load(broken, result)
    assert result.skipped["broken"].startswith("import failed")


def test_unknown_names_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"veil.instrument\(\)='flsk' is invalid"):
        veil.instrument("flsk")


def test_disabled_instrumentations_are_reported() -> None:
    registered = instrumentation.available()
    if not registered:
        pytest.skip("no veil instrumentation is registered")
    result = instrumentation.instrument(disabled=["*"])
    assert set(result.skipped) == set(registered)
    assert not result.instrumented
    assert all(
        reason.startswith("disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS") for reason in result.skipped.values()
    )


def test_every_registered_instrumentation_is_a_veil_base_instrumentor() -> None:
    for name, entry_point in instrumentation.available().items():
        assert entry_point.value.startswith("veil.instrumentation."), name
        instrumentor = entry_point.load()()
        assert isinstance(instrumentor, BaseInstrumentor), name
        # Standard-library integrations (urllib, logging) have no distribution to check.
        for requirement in instrumentor.instrumentation_dependencies():
            assert Requirement(requirement).specifier, f"{name}: {requirement} declares no version range"
