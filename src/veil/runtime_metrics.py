"""Runtime metrics of the process: CPU time, memory, file descriptors, threads, uptime and the CPython GC.

Every value is read by an observable instrument's callback, so it costs nothing between two collections: the
work happens when Prometheus scrapes or the periodic reader exports, on that thread, never on a timer of its
own. The only thing running between collections is a `gc.callbacks` hook that adds up the time each
collection pauses the interpreter (two `perf_counter()` calls per GC run).

Names follow the semantic conventions (`process.*`, `cpython.*`) where they define one; GC pause time has no
convention yet, so it is `veil.cpython.gc.pause.time`, shaped like `dotnet.gc.pause.time`. Linux reads
/proc; elsewhere memory is not reported, threads count Python threads only and file descriptors come from
/dev/fd when it exists. `VEIL_RUNTIME_METRICS=false` turns all of this off.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.semconv._incubating.attributes.cpu_attributes import CPU_MODE
from opentelemetry.semconv._incubating.attributes.cpython_attributes import CPYTHON_GC_GENERATION
from opentelemetry.semconv._incubating.attributes.process_attributes import PROCESS_RUNTIME_VERSION
from opentelemetry.semconv._incubating.metrics.cpython_metrics import (
    CPYTHON_GC_COLLECTED_OBJECTS,
    CPYTHON_GC_COLLECTIONS,
    CPYTHON_GC_UNCOLLECTABLE_OBJECTS,
)
from opentelemetry.semconv._incubating.metrics.process_metrics import (
    PROCESS_CPU_TIME,
    PROCESS_MEMORY_USAGE,
    PROCESS_MEMORY_VIRTUAL,
    PROCESS_THREAD_COUNT,
    PROCESS_UNIX_FILE_DESCRIPTOR_COUNT,
    PROCESS_UPTIME,
)
from opentelemetry.semconv.schemas import Schemas

from veil._guard import log_once
from veil._version import __version__

__all__ = ["GC_PAUSE_TIME", "SCOPE_NAME", "gc_pause_seconds", "register_runtime_metrics"]

SCOPE_NAME: Final = "veil.runtime_metrics"
"""Instrumentation scope of the runtime metrics (`otel_scope_name` in Prometheus)."""

GC_PAUSE_TIME: Final = "veil.cpython.gc.pause.time"
"""Total seconds the interpreter spent in garbage collection, per generation (no convention exists yet)."""

_PYTHON_VERSION: Final = ".".join(str(part) for part in sys.version_info[:3])
_STAT_PATH: Final = "/proc/self/stat"
# Field positions in /proc/self/stat counted from the field after the command name (proc(5) numbers them
# from 1 with the pid, so field N is at index N - 3).
_STAT_THREADS: Final = 20 - 3
_STAT_VIRTUAL_BYTES: Final = 23 - 3
_STAT_RESIDENT_PAGES: Final = 24 - 3


class _GcPauses:
    """A `gc.callbacks` hook adding up, per generation, the seconds each collection took."""

    def __init__(self) -> None:
        self.totals = [0.0] * len(gc.get_stats())
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        # The interpreter runs one collection at a time, holding the GIL: start and stop always pair up.
        try:
            if phase == "start":
                self._started = time.perf_counter()
            elif self._started:
                generation = info.get("generation", 0)
                if 0 <= generation < len(self.totals):
                    self.totals[generation] += time.perf_counter() - self._started
                self._started = 0.0
        except Exception:  # pragma: no cover - a gc callback must never raise
            self._started = 0.0


_gc_pauses: _GcPauses | None = None
_gc_lock = threading.Lock()


def _install_gc_hook() -> _GcPauses:
    """Start timing GC runs (once per process; the hook stays for the life of the process)."""
    global _gc_pauses
    with _gc_lock:
        if _gc_pauses is None:
            _gc_pauses = _GcPauses()
            gc.callbacks.append(_gc_pauses)
        return _gc_pauses


def gc_pause_seconds() -> tuple[float, ...]:
    """Seconds spent in GC per generation since runtime metrics were first registered (zeros before)."""
    pauses = _gc_pauses
    return tuple(pauses.totals) if pauses is not None else ()


class _ProcStat:
    """/proc/self/stat, read by each callback that needs it (a few microseconds; no stale cached values)."""

    def __init__(self, path: str = _STAT_PATH) -> None:
        self._path = path
        self.available = os.path.exists(path)

    def fields(self) -> list[str] | None:
        if not self.available:
            return None
        with open(self._path, encoding="ascii", errors="replace") as stat:
            text = stat.read()
        # The command name may contain spaces and parentheses: split after its last ')'.
        return text[text.rfind(")") + 2 :].split()


def _fd_directory() -> str | None:
    for path in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(path):
            return path
    return None


def _guarded(
    name: str, read: Callable[[], Iterable[Observation]]
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """A callback that reports nothing (and logs once) instead of raising into the collection."""

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        try:
            return list(read())
        except Exception:
            log_once(f"runtime_metrics.{name}", "veil: runtime metric %s could not be read", name, exc_info=True)
            return []

    return callback


def register_runtime_metrics(meter_provider: MeterProvider) -> None:
    """Create the runtime metric instruments on `meter_provider` and start timing GC runs."""
    meter = meter_provider.get_meter(SCOPE_NAME, __version__, schema_url=Schemas.V1_26_0.value)
    stat = _ProcStat()
    page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    fd_directory = _fd_directory()
    started = time.monotonic() - _process_age_seconds()
    pauses = _install_gc_hook()
    generations: list[dict[str, str | int]] = [
        {CPYTHON_GC_GENERATION: generation, PROCESS_RUNTIME_VERSION: _PYTHON_VERSION}
        for generation in range(len(gc.get_stats()))
    ]

    def cpu_time() -> Iterable[Observation]:
        times = os.times()
        return [Observation(times.user, {CPU_MODE: "user"}), Observation(times.system, {CPU_MODE: "system"})]

    def memory_usage() -> Iterable[Observation]:
        fields = stat.fields()
        return [] if fields is None else [Observation(int(fields[_STAT_RESIDENT_PAGES]) * page_size)]

    def memory_virtual() -> Iterable[Observation]:
        fields = stat.fields()
        return [] if fields is None else [Observation(int(fields[_STAT_VIRTUAL_BYTES]))]

    def thread_count() -> Iterable[Observation]:
        fields = stat.fields()
        return [Observation(int(fields[_STAT_THREADS]) if fields is not None else threading.active_count())]

    def file_descriptors() -> Iterable[Observation]:
        if fd_directory is None:
            return []
        # Listing the directory opens one descriptor of its own, which is not counted.
        return [Observation(max(len(os.listdir(fd_directory)) - 1, 0))]

    def uptime() -> Iterable[Observation]:
        return [Observation(time.monotonic() - started)]

    def gc_stat(key: str) -> Callable[[], Iterable[Observation]]:
        def read() -> Iterable[Observation]:
            return [
                Observation(stats[key], attributes)
                for stats, attributes in zip(gc.get_stats(), generations, strict=False)
            ]

        return read

    def gc_pause_time() -> Iterable[Observation]:
        return [Observation(total, attributes) for total, attributes in zip(pauses.totals, generations, strict=False)]

    meter.create_observable_counter(
        PROCESS_CPU_TIME, [_guarded("cpu", cpu_time)], unit="s", description="CPU seconds used by this process."
    )
    if stat.available:
        meter.create_observable_up_down_counter(
            PROCESS_MEMORY_USAGE,
            [_guarded("memory", memory_usage)],
            unit="By",
            description="Resident memory (RSS) of this process.",
        )
        meter.create_observable_up_down_counter(
            PROCESS_MEMORY_VIRTUAL,
            [_guarded("memory", memory_virtual)],
            unit="By",
            description="Virtual memory size of this process.",
        )
    meter.create_observable_up_down_counter(
        PROCESS_THREAD_COUNT,
        [_guarded("threads", thread_count)],
        unit="{thread}",
        description="Threads of this process (Python threads only where /proc is absent).",
    )
    if fd_directory is not None:
        meter.create_observable_up_down_counter(
            PROCESS_UNIX_FILE_DESCRIPTOR_COUNT,
            [_guarded("file_descriptors", file_descriptors)],
            unit="{file_descriptor}",
            description="File descriptors open in this process.",
        )
    meter.create_observable_gauge(
        PROCESS_UPTIME, [_guarded("uptime", uptime)], unit="s", description="Seconds since this process started."
    )
    meter.create_observable_counter(
        CPYTHON_GC_COLLECTIONS,
        [_guarded("gc", gc_stat("collections"))],
        unit="{collection}",
        description="Collections of each GC generation since interpreter start.",
    )
    meter.create_observable_counter(
        CPYTHON_GC_COLLECTED_OBJECTS,
        [_guarded("gc", gc_stat("collected"))],
        unit="{object}",
        description="Objects collected in each GC generation since interpreter start.",
    )
    meter.create_observable_counter(
        CPYTHON_GC_UNCOLLECTABLE_OBJECTS,
        [_guarded("gc", gc_stat("uncollectable"))],
        unit="{object}",
        description="Objects found uncollectable in each GC generation since interpreter start.",
    )
    meter.create_observable_counter(
        GC_PAUSE_TIME,
        [_guarded("gc_pause", gc_pause_time)],
        unit="s",
        description="Seconds the interpreter was paused by each GC generation since veil started timing.",
    )


def _process_age_seconds() -> float:
    """How long this process has been running (0.0 where the start time cannot be read)."""
    try:
        with open(_STAT_PATH, encoding="ascii", errors="replace") as stat:
            text = stat.read()
        start_ticks = int(text[text.rfind(")") + 2 :].split()[22 - 3])
        with open("/proc/uptime", encoding="ascii") as uptime:
            system_uptime = float(uptime.read().split()[0])
        return max(system_uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0
