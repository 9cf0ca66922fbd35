"""Per-query overhead of veil's database instrumentation against contrib's, and the statement sanitizer's cost.

Part 1, sqlite3 in memory (CPU only, no network noise). One process, one run: every round times each variant
on the same query, the variants interleaved within the round (order reversed every other round); the median
per-query time over the rounds is reported, and overhead = variant - bare. All variants share one SDK setup:
a TracerProvider with a BatchSpanProcessor to a no-op exporter and a MeterProvider with an in-memory reader.

Variants: bare (a connection opened before any instrumentation), veil (a connection opened through veil's
sqlite3 instrumentation), contrib (opentelemetry-instrumentation-sqlite3, through its connection proxy), and
span-floor (a hand-written wrapper that makes only the tracing calls any instrumentation must make: start a
CLIENT span with the 6 attributes veil records, end it). Two scenarios: `parameterized` (the same statement with a bound
parameter, the common case) and `inline literals` (a new literal in every statement: veil's sanitizer misses
its cache every time, its worst case). Each variant is checked once before timing: one span per query for
veil, contrib and the floor, none for bare.

Part 2, the sanitizer alone: a typical 200-character statement with 7 literals, uncached (a different
statement each call) and cached (the same statement again), next to one `re.sub` of its quoted strings (the
cost of a single regular-expression pass over the text: a floor for any regex-based sanitizer).

    python benchmarks/bench_db.py [--rounds 15] [--queries 2000]

contrib's sqlite3 instrumentation (extra `bench`) is imported only here, never by veil or its tests' defaults.
"""

from __future__ import annotations

import argparse
import gc
import re
import sqlite3
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from veil.instrumentation import sqlite3 as veil_sqlite3
from veil.instrumentation.sqlite3 import SQLite3Instrumentor
from veil.redaction.statements import sanitized_count

STATEMENT_200 = (
    "SELECT u.id, u.name, u.email, o.total FROM users u JOIN orders o ON o.user_id = u.id "
    "WHERE u.email = 'alice@example.com' AND o.created_at > '2024-01-01' AND o.status IN ('paid', 'shipped') "
    "AND o.total > {} LIMIT 20"
)


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Counting(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def providers(exporter: SpanExporter) -> tuple[TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65536))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def schema(connection: sqlite3.Connection) -> sqlite3.Connection:
    connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    connection.executemany("INSERT INTO users VALUES (?, ?)", [(index, f"user{index}") for index in range(100)])
    return connection


class SpanFloor:
    """The tracing calls any instrumentation has to make around `execute`: one CLIENT span with the 6 attributes
    veil records for this query.
    """

    def __init__(self, connection: sqlite3.Connection, tracer_provider: TracerProvider) -> None:
        self.cursor = connection.cursor()
        self.tracer = tracer_provider.get_tracer("floor")
        self.attributes = {
            "db.system.name": "sqlite",
            "db.namespace": ":memory:",
            "db.operation.name": "SELECT",
            "db.collection.name": "users",
            "db.query.summary": "SELECT users",
            "db.query.text": "SELECT name FROM users WHERE id = ?",
        }

    def execute(self, statement: str, parameters: Any = ()) -> Any:
        span = self.tracer.start_span("SELECT users", kind=SpanKind.CLIENT, attributes=self.attributes)
        try:
            return self.cursor.execute(statement, parameters)
        finally:
            span.end()


def connections(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> dict[str, Any]:
    """bare, contrib, veil and span-floor executors on their own in-memory databases."""
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor as ContribInstrumentor

    original = sqlite3.connect
    bare = schema(original(":memory:"))
    ContribInstrumentor().instrument(tracer_provider=tracer_provider)
    contrib = schema(sqlite3.connect(":memory:"))  # contrib's proxy around a plain connection
    SQLite3Instrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    # veil's connect wrapper applied to the original connect, so the connection is veil's only
    veil = schema(veil_sqlite3._connect(original, None, (":memory:",), {}))
    floor = SpanFloor(schema(original(":memory:")), tracer_provider)
    return {"bare": bare.cursor(), "veil": veil.cursor(), "contrib": contrib.cursor(), "span-floor": floor}


def parameterized(cursor: Any, count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        cursor.execute("SELECT name FROM users WHERE id = ?", (index % 100,)).fetchone()
    return (time.perf_counter() - started) / count


def inline_literals(cursor: Any, count: int) -> float:
    statements = [f"SELECT name FROM users WHERE id = {index % 100} AND name <> 'x{index}'" for index in range(count)]
    started = time.perf_counter()
    for statement in statements:
        cursor.execute(statement).fetchone()
    return (time.perf_counter() - started) / count


def verify(tracer_provider: TracerProvider, exporter: Counting, executors: dict[str, Any]) -> None:
    for name, executor in executors.items():
        tracer_provider.force_flush()
        before = exporter.count
        parameterized(executor, 10)
        tracer_provider.force_flush()
        spans = exporter.count - before
        expected = 0 if name == "bare" else 10
        if spans != expected:
            raise SystemExit(f"{name}: {spans} spans for 10 queries, expected {expected}")


def run(scenario: Callable[[Any, int], float], executors: dict[str, Any], rounds: int, count: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in executors}
    names = list(executors)
    for round_index in range(rounds):
        order = names if round_index % 2 == 0 else list(reversed(names))
        for name in order:
            gc.collect()
            samples[name].append(scenario(executors[name], count))
    return {name: statistics.median(values) * 1e6 for name, values in samples.items()}


def print_table(title: str, medians: dict[str, float]) -> None:
    bare = medians["bare"]
    print(f"\n{title}: median µs per query (overhead = variant - bare)")
    print(f"{'variant':<12}{'µs/query':>10}{'overhead':>10}")
    for name, value in medians.items():
        print(f"{name:<12}{value:>10.2f}{value - bare:>10.2f}")
    veil, contrib = medians["veil"] - bare, medians["contrib"] - bare
    print(f"veil overhead / contrib overhead = {veil / contrib:.2f} (target <= 0.33)")
    print(f"veil overhead / span floor overhead = {veil / (medians['span-floor'] - bare):.2f}")


def sanitizer(rounds: int, count: int) -> None:
    """Medians over `rounds` of: a new statement each call (uncached), the same one again (cached), and one
    regular-expression substitution of the statement's quoted strings (a floor for any regex-based sanitizer)."""
    quoted = re.compile(r"'[^']*'")
    samples: dict[str, list[float]] = {"uncached": [], "cached": [], "one re.sub": []}
    for round_index in range(rounds):
        statements = [STATEMENT_200.format(1000 + round_index * count + index) for index in range(count)]
        started = time.perf_counter()
        for statement in statements:
            sanitized_count(statement, "postgresql")
        samples["uncached"].append((time.perf_counter() - started) / count)
        started = time.perf_counter()
        for _ in range(count):
            sanitized_count(statements[0], "postgresql")
        samples["cached"].append((time.perf_counter() - started) / count)
        started = time.perf_counter()
        for statement in statements:
            quoted.sub("?", statement)
        samples["one re.sub"].append((time.perf_counter() - started) / count)
    length = len(STATEMENT_200.format(1000))
    print(f"sanitizer, {length}-character statement with 7 literals (median µs per statement):")
    for name, values in samples.items():
        print(f"  {name:<11}{statistics.median(values) * 1e6:>8.2f}")
    print("  (target: <= 10 µs uncached)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--queries", type=int, default=2000)
    arguments = parser.parse_args(argv)
    rounds, queries = arguments.rounds, arguments.queries
    gc.collect()
    sanitizer(rounds, queries)  # first, in a small heap: the timing is the sanitizer's, not the collector's
    exporter = Counting()
    tracer_provider, meter_provider = providers(exporter)
    executors = connections(tracer_provider, meter_provider)
    verify(tracer_provider, exporter, executors)
    print_table("sqlite3 in memory, parameterized", run(parameterized, executors, rounds, queries))
    print_table("sqlite3 in memory, inline literals", run(inline_literals, executors, rounds, queries))
    tracer_provider.shutdown()


if __name__ == "__main__":
    main()
