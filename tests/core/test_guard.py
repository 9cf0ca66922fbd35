"""`veil._guard.OncePerInterval` (behind `log_once`) and the SDK export-log filter built on it."""

from __future__ import annotations

import logging
import threading
import time

from veil import _guard
from veil.export import otlp


def test_a_key_passes_once_per_interval_even_from_many_threads() -> None:
    limiter = _guard.OncePerInterval(interval=0.2)
    barrier = threading.Barrier(16)
    passed: list[bool] = []

    def race() -> None:
        barrier.wait()
        for _ in range(200):
            passed.append(limiter.first("same"))

    threads = [threading.Thread(target=race) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert passed.count(True) == 1
    assert limiter.first("another")
    time.sleep(0.25)
    assert limiter.first("same")


def test_a_bounded_limiter_forgets_every_key_when_full() -> None:
    limiter = _guard.OncePerInterval(limit=2)
    assert limiter.first("a") and limiter.first("b")
    assert not limiter.first("a")
    assert limiter.first("c")  # full: forgets a and b
    assert limiter.first("a")
    unbounded = _guard.OncePerInterval()
    assert all(unbounded.first(index) for index in range(1000))
    assert not unbounded.first(0)


def test_log_once_and_forget() -> None:
    _guard.reset_for_tests()
    logger = logging.getLogger("test.guard")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        assert _guard.log_once("test.guard.key", "first %s", 1, logger=logger)
        assert not _guard.log_once("test.guard.key", "second", logger=logger)
        _guard.reset_for_tests()
        assert _guard.log_once("test.guard.key", "third", logger=logger)
    finally:
        logger.removeHandler(handler)
    assert records == ["first 1", "third"]


def test_the_sdk_export_loggers_keep_one_record_per_logger_and_message_a_minute() -> None:
    logger = logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter")
    installed_before = otlp._filter in logger.filters
    otlp.limit_sdk_export_logs()
    otlp.limit_sdk_export_logs()  # idempotent
    assert logger.filters.count(otlp._filter) == 1
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    template = f"Transient error %s encountered while exporting, retrying in %ss ({time.monotonic()})"
    try:
        for attempt in range(5):
            logger.warning(template, "UNAVAILABLE", attempt)
        logger.warning(template + " (another message)", "UNAVAILABLE", 9)
    finally:
        logger.removeHandler(handler)
        if not installed_before:
            logger.removeFilter(otlp._filter)
    assert records == [template % ("UNAVAILABLE", 0), template % ("UNAVAILABLE", 9) + " (another message)"]
