"""Runtime metrics read through a real SDK pipeline (an in-memory reader): names, units, attributes and
values that follow what the process does."""

from __future__ import annotations

import gc
import os
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.semconv._incubating.metrics.cpython_metrics import CPYTHON_GC_COLLECTIONS
from opentelemetry.semconv._incubating.metrics.process_metrics import (
    PROCESS_CPU_TIME,
    PROCESS_MEMORY_USAGE,
    PROCESS_THREAD_COUNT,
    PROCESS_UNIX_FILE_DESCRIPTOR_COUNT,
    PROCESS_UPTIME,
)

from veil import runtime_metrics
from veil.runtime_metrics import GC_PAUSE_TIME, SCOPE_NAME, register_runtime_metrics

LINUX = os.path.isdir("/proc/self/fd")


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    register_runtime_metrics(provider)
    yield reader
    provider.shutdown()


def collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    assert data is not None
    result = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            assert scope_metrics.scope.name == SCOPE_NAME
            for metric in scope_metrics.metrics:
                result[metric.name] = metric
    return result


def values(metric: Any) -> dict[tuple[tuple[str, Any], ...], float]:
    return {tuple(sorted((point.attributes or {}).items())): point.value for point in metric.data.data_points}


def single(metric: Any) -> float:
    (value,) = values(metric).values()
    return value


def test_names_units_and_attributes(reader: InMemoryMetricReader) -> None:
    metrics = collect(reader)
    assert metrics[PROCESS_CPU_TIME].unit == "s"
    assert {dict(key)["cpu.mode"] for key in values(metrics[PROCESS_CPU_TIME])} == {"user", "system"}
    assert metrics[PROCESS_UPTIME].unit == "s"
    assert metrics[CPYTHON_GC_COLLECTIONS].unit == "{collection}"
    generations = [dict(key) for key in values(metrics[CPYTHON_GC_COLLECTIONS])]
    assert sorted(item["cpython.gc.generation"] for item in generations) == list(range(len(gc.get_stats())))
    assert {item["process.runtime.version"] for item in generations} == {
        ".".join(map(str, os.sys.version_info[:3]))  # type: ignore[attr-defined]
    }
    assert metrics[GC_PAUSE_TIME].unit == "s"


@pytest.mark.skipif(not LINUX, reason="memory and thread counts come from /proc")
def test_values_follow_the_process(reader: InMemoryMetricReader) -> None:
    before = collect(reader)
    with open("/proc/self/status") as status:
        rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    assert abs(single(before[PROCESS_MEMORY_USAGE]) - rss_kib * 1024) < 64 * 1024 * 1024

    files = [tempfile.TemporaryFile() for _ in range(5)]  # noqa: SIM115 - closed below
    release = threading.Event()
    threads = [threading.Thread(target=release.wait) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        during = collect(reader)
    finally:
        release.set()
        for thread in threads:
            thread.join()
        for file in files:
            file.close()
    assert single(during[PROCESS_UNIX_FILE_DESCRIPTOR_COUNT]) == single(before[PROCESS_UNIX_FILE_DESCRIPTOR_COUNT]) + 5
    assert single(during[PROCESS_THREAD_COUNT]) == single(before[PROCESS_THREAD_COUNT]) + 3
    assert single(during[PROCESS_UPTIME]) >= single(before[PROCESS_UPTIME]) > 0


def test_gc_collections_and_pause_time_count_a_full_collection(reader: InMemoryMetricReader) -> None:
    oldest = len(gc.get_stats()) - 1
    before = collect(reader)
    collections_before = {
        dict(key)["cpython.gc.generation"]: value for key, value in values(before[CPYTHON_GC_COLLECTIONS]).items()
    }
    pause_before = runtime_metrics.gc_pause_seconds()[oldest]
    garbage = [[] for _ in range(10_000)]
    for item in garbage:
        item.append(item)  # reference cycles for the collector to find
    del garbage, item
    gc.collect()
    after = collect(reader)
    collections_after = {
        dict(key)["cpython.gc.generation"]: value for key, value in values(after[CPYTHON_GC_COLLECTIONS]).items()
    }
    assert collections_after[oldest] >= collections_before[oldest] + 1
    assert runtime_metrics.gc_pause_seconds()[oldest] > pause_before
    pauses = {dict(key)["cpython.gc.generation"]: value for key, value in values(after[GC_PAUSE_TIME]).items()}
    assert pauses[oldest] == pytest.approx(runtime_metrics.gc_pause_seconds()[oldest], rel=0.5)


def test_registering_twice_keeps_one_gc_hook() -> None:
    first = MeterProvider(shutdown_on_exit=False)
    second = MeterProvider(shutdown_on_exit=False)
    register_runtime_metrics(first)
    register_runtime_metrics(second)
    hooks = [callback for callback in gc.callbacks if type(callback).__name__ == "_GcPauses"]
    assert len(hooks) == 1
    first.shutdown()
    second.shutdown()
