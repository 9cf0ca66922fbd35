"""Cost on the calling thread of veil.audit(), and of the request-level attack signals on a benign request.

Run: python benchmarks/bench_security_events.py [--calls 20000] [--rounds 15]

One process, one run, interleaved rounds, medians. `veil.audit()` part: each round times `calls` calls inside a
sampled span of (a) a bare Python function with the same arguments (the floor), (b) `veil.audit()` with the OTLP
log pipeline only (a batch processor whose exporter drops the batches), (c) the same plus the hash-chained audit
file and an ECS JSON-lines sink (both written by their own threads, which share the GIL with the caller: their
cost shows in the wall column; the CPU column is the calling thread's own time). Queues are sized so that
nothing is dropped (a dropped event would be cheaper).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence

from opentelemetry import trace
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult

import veil
from veil.security.audit import audit


class NullExporter(LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def bare(
    action: str, *, actor: object = None, target: object = None, outcome: str = "success", **extra: object
) -> None:
    return None


def configure(directory: str, with_outputs: bool, queue: int) -> veil.Telemetry:
    outputs = {}
    if with_outputs:
        outputs = {
            "audit_file": os.path.join(directory, "audit.jsonl"),
            "audit_key": "benchmark-checkpoint-key",
            "security_sinks": "jsonl:" + os.path.join(directory, "security.jsonl"),
        }
    telemetry = veil.configure(
        force=True, auto_instrument=False, traces_exporter="none", security_sink_queue_size=queue, **outputs
    )
    assert telemetry.logger_provider is not None and telemetry.tracer_provider is not None
    telemetry.logger_provider.add_log_record_processor(BatchLogRecordProcessor(NullExporter(), max_queue_size=queue))
    return telemetry


def audit_benchmark(calls: int, rounds: int) -> None:
    directory = tempfile.mkdtemp(prefix="veil-bench-audit-")
    setups: dict[str, Callable[[], veil.Telemetry | None]] = {
        "bare function (floor)": lambda: None,
        "veil.audit, OTLP log only": lambda: configure(directory, False, calls * 2),
        "veil.audit + audit file + JSON lines": lambda: configure(directory, True, calls * 2),
    }
    functions = {"bare function (floor)": bare}

    def run(function: Callable[..., None]) -> tuple[float, float]:
        with trace.get_tracer("bench").start_as_current_span("request"):
            start, cpu = time.perf_counter(), time.thread_time()
            for number in range(calls):
                function("role.grant", actor="alice", target="user:42", role="admin", ticket=number)
            return (time.perf_counter() - start) / calls * 1e6, (time.thread_time() - cpu) / calls * 1e6

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    for round_number in range(rounds + 1):
        for name, setup in setups.items():
            telemetry = setup()
            elapsed = run(functions.get(name, audit))
            if telemetry is not None:
                telemetry.force_flush(60_000)
                lost = telemetry.health().logs.lost
                assert lost == 0, f"{name}: {lost} events lost; raise the queue size"
            if round_number:  # the first round warms up
                results[name].append(elapsed)
    veil.telemetry.reset_for_tests()
    floor = [statistics.median(value[index] for value in results["bare function (floor)"]) for index in (0, 1)]
    print(f"veil.audit(): {calls} calls x {rounds} interleaved rounds, median microseconds per call")
    print("wall: elapsed on the caller, including the GIL time veil's threads take meanwhile;")
    print("thread CPU: the calling thread's own CPU time (time.thread_time)\n")
    print(f"{'setup':40} {'wall':>8} {'added':>8} {'CPU':>8} {'added':>8}")
    for name, values in results.items():
        wall, cpu = (statistics.median(value[index] for value in values) for index in (0, 1))
        print(f"{name:40} {wall:8.2f} {wall - floor[0]:8.2f} {cpu:8.2f} {cpu - floor[1]:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    audit_benchmark(args.calls, args.rounds)


if __name__ == "__main__":
    main()
