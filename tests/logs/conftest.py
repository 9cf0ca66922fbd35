"""Fixtures for the logs tests: a clean logging state around every test, and an instrumented veil."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import veil
from veil.instrumentation.stdlib_logging import LoggingInstrumentor


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Restore the root logger, the record factory and Logger.callHandlers after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    factory = logging.getLogRecordFactory()
    call_handlers = logging.Logger.__dict__["callHandlers"]
    yield
    instrumentor = LoggingInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    root.handlers[:] = handlers
    root.setLevel(level)
    assert logging.getLogRecordFactory() is factory, "the record factory leaked out of the test"
    assert logging.Logger.__dict__["callHandlers"] is call_handlers, "Logger.callHandlers leaked out of the test"


class Lines:
    """A handler on one logger that keeps what a format string made of each record."""

    def __init__(self, logger: logging.Logger, fmt: str) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(logging.Formatter(fmt))
        self.logger = logger
        logger.addHandler(self.handler)
        logger.setLevel(logging.DEBUG)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def close(self) -> None:
        self.logger.removeHandler(self.handler)


@pytest.fixture
def lines() -> Iterator[Callable[[str, str], Lines]]:
    made: list[Lines] = []

    def make(logger_name: str, fmt: str) -> Lines:
        captured = Lines(logging.getLogger(logger_name), fmt)
        made.append(captured)
        return captured

    yield make
    for captured in made:
        captured.close()


@pytest.fixture
def veil_logging(configure_veil: Callable[..., veil.Telemetry]) -> Callable[..., veil.Telemetry]:
    """configure_veil(**settings) followed by veil.instrument("logging")."""

    def configure(**kwargs: Any) -> veil.Telemetry:
        handle = configure_veil(**kwargs)
        result = veil.instrument("logging")
        assert "logging" in result.instrumented, result.skipped
        return handle

    return configure
