"""Shared fixtures: the real OTLP and Zipkin receivers, and a clean veil configuration per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import veil
from veil import _guard, telemetry

pytest_plugins = [
    "tests.fixtures.otlp",
    "tests.fixtures.zipkin",
    "tests.fixtures.http_server",
    "tests.fixtures.databases",
    "pytester",
]


@pytest.fixture
def configure_veil() -> Iterator[Callable[..., veil.Telemetry]]:
    """`veil.configure(force=True, ...)` for one test; everything it installed is shut down afterwards."""
    _guard.reset_for_tests()

    def configure(**kwargs: Any) -> veil.Telemetry:
        kwargs.setdefault("auto_instrument", False)
        return veil.configure(force=True, **kwargs)

    yield configure
    telemetry.reset_for_tests()
