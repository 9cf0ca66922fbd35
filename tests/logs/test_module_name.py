"""The logging instrumentation's module is `stdlib_logging`; `veil.instrumentation.logging` is a warning alias."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import pytest

from veil.instrumentation import stdlib_logging


def test_the_entry_point_keeps_its_name_and_loads_the_new_module() -> None:
    (entry,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "logging"]
    assert entry.value == "veil.instrumentation.stdlib_logging:LoggingInstrumentor"
    assert entry.load() is stdlib_logging.LoggingInstrumentor


def test_the_old_module_path_forwards_every_name_with_a_deprecation_warning() -> None:
    alias = importlib.import_module("veil.instrumentation.logging")
    with pytest.warns(DeprecationWarning, match=r"import from veil\.instrumentation\.stdlib_logging") as caught:
        from veil.instrumentation.logging import LoggingInstrumentor
    assert LoggingInstrumentor is stdlib_logging.LoggingInstrumentor
    assert caught[0].filename == __file__  # the warning names the importer
    with pytest.warns(DeprecationWarning, match="deprecated"):
        assert alias.empty_fields is stdlib_logging.empty_fields
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = alias.nothing_here
