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


class _Readings:
    """What the callbacks read: the process (via /proc where present) and the CPython GC."""

    def __init__(self) -> None:
        self.stat = _ProcStat()
        self.page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.fd_directory = _fd_directory()
        self.started = time.monotonic() - _process_age_seconds()
        self.pauses = _install_gc_hook()
        self.generations: list[dict[str, str | int]] = [
            {CPYTHON_GC_GENERATION: generation, PROCESS_RUNTIME_VERSION: _PYTHON_VERSION}
            for generation in range(len(gc.get_stats()))
        ]

    def cpu_time(self) -> Iterable[Observation]:
        times = os.times()
        return [Observation(times.user, {CPU_MODE: "user"}), Observation(times.system, {CPU_MODE: "system"})]

    def memory_usage(self) -> Iterable[Observation]:
        fields = self.stat.fields()
        return [] if fields is None else [Observation(int(fields[_STAT_RESIDENT_PAGES]) * self.page_size)]

    def memory_virtual(self) -> Iterable[Observation]:
        fields = self.stat.fields()
        return [] if fields is None else [Observation(int(fields[_STAT_VIRTUAL_BYTES]))]

    def thread_count(self) -> Iterable[Observation]:
        fields = self.stat.fields()
        return [Observation(int(fields[_STAT_THREADS]) if fields is not None else threading.active_count())]

    def file_descriptors(self) -> Iterable[Observation]:
        if self.fd_directory is None:
            return []
        # Listing the directory opens one descriptor of its own, which is not counted.
        return [Observation(max(len(os.listdir(self.fd_directory)) - 1, 0))]

    def uptime(self) -> Iterable[Observation]:
        return [Observation(time.monotonic() - self.started)]

    def gc_stat(self, key: str) -> Callable[[], Iterable[Observation]]:
        def read() -> Iterable[Observation]:
            return [
                Observation(stats[key], attributes)
                for stats, attributes in zip(gc.get_stats(), self.generations, strict=False)
            ]

        return read

    def gc_pause_time(self) -> Iterable[Observation]:
        totals = self.pauses.totals
        return [Observation(total, attributes) for total, attributes in zip(totals, self.generations, strict=False)]


def register_runtime_metrics(meter_provider: MeterProvider) -> None:
    """Create the runtime metric instruments on `meter_provider` and start timing GC runs."""
    meter = meter_provider.get_meter(SCOPE_NAME, __version__, schema_url=Schemas.V1_26_0.value)
    read = _Readings()
    counter, up_down = meter.create_observable_counter, meter.create_observable_up_down_counter

    def observe(create: Callable[..., Any], name: str, reader: Callable[[], Iterable[Observation]], unit: str) -> None:
        create(name, [_guarded(name, reader)], unit=unit, description=_DESCRIPTIONS[name])

    observe(counter, PROCESS_CPU_TIME, read.cpu_time, "s")
    if read.stat.available:
        observe(up_down, PROCESS_MEMORY_USAGE, read.memory_usage, "By")
        observe(up_down, PROCESS_MEMORY_VIRTUAL, read.memory_virtual, "By")
    observe(up_down, PROCESS_THREAD_COUNT, read.thread_count, "{thread}")
    if read.fd_directory is not None:
        observe(up_down, PROCESS_UNIX_FILE_DESCRIPTOR_COUNT, read.file_descriptors, "{file_descriptor}")
    observe(meter.create_observable_gauge, PROCESS_UPTIME, read.uptime, "s")
    observe(counter, CPYTHON_GC_COLLECTIONS, read.gc_stat("collections"), "{collection}")
    observe(counter, CPYTHON_GC_COLLECTED_OBJECTS, read.gc_stat("collected"), "{object}")
    observe(counter, CPYTHON_GC_UNCOLLECTABLE_OBJECTS, read.gc_stat("uncollectable"), "{object}")
    observe(counter, GC_PAUSE_TIME, read.gc_pause_time, "s")


_DESCRIPTIONS: Final = {
    PROCESS_CPU_TIME: "CPU seconds used by this process.",
    PROCESS_MEMORY_USAGE: "Resident memory (RSS) of this process.",
    PROCESS_MEMORY_VIRTUAL: "Virtual memory size of this process.",
    PROCESS_THREAD_COUNT: "Threads of this process (Python threads only where /proc is absent).",
    PROCESS_UNIX_FILE_DESCRIPTOR_COUNT: "File descriptors open in this process.",
    PROCESS_UPTIME: "Seconds since this process started.",
    CPYTHON_GC_COLLECTIONS: "Collections of each GC generation since interpreter start.",
    CPYTHON_GC_COLLECTED_OBJECTS: "Objects collected in each GC generation since interpreter start.",
    CPYTHON_GC_UNCOLLECTABLE_OBJECTS: "Objects found uncollectable in each GC generation since interpreter start.",
    GC_PAUSE_TIME: "Seconds the interpreter was paused by each GC generation since veil started timing.",
}


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
