"""Cost of redaction: per span (10 typical attributes), per log record, per attribute, and the fast path.

One process, one run, interleaved rounds; medians printed with ratios to the one-span floor (creating and
ending one recording span with the same 10 attributes, no exporter). Redaction runs on the export thread in
veil (RedactingSpanExporter), so the request-thread cost of redaction is zero; these numbers are the export
thread's cost and tell how much CPU it takes per span.

    python benchmarks/bench_redaction.py
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from veil.redaction import Redactor
from veil.redaction.export import ExportRedaction
from veil.redaction.url import DEFAULT_SENSITIVE_QUERY_PARAMETERS, redact_url

ROUNDS = 15
PER_ROUND = 2_000

TYPICAL = {
    "http.request.method": "GET",
    "http.route": "/api/v1/orders/{order_id}",
    "url.path": "/api/v1/orders/8f14e45f",
    "url.scheme": "https",
    "http.response.status_code": 200,
    "server.address": "orders.internal",
    "server.port": 8080,
    "user_agent.original": "python-httpx/0.27.0",
    "order.id": "3f2b8c1e-9d4a-4b7e-a1c2-5e6f7a8b9c0d",
    "network.protocol.version": "1.1",
}
SENSITIVE = dict(TYPICAL, **{"url.full": "https://u:p@h/x?token=abc&page=2", "note": "mail bob@example.com"})


def timed(function: Callable[[], object], count: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(count):
        function()
    return (time.perf_counter_ns() - started) / count / 1000.0  # µs


def main() -> None:
    redactor = Redactor.default()
    redaction = ExportRedaction(redactor)
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    with tracer.start_as_current_span("GET /api/v1/orders/{order_id}", attributes=TYPICAL):
        pass
    with tracer.start_as_current_span("GET /api/v1/orders/{order_id}", attributes=SENSITIVE):
        pass
    benign_span, sensitive_span = memory.get_finished_spans()
    floor_provider = TracerProvider()
    floor_tracer = floor_provider.get_tracer("floor")

    def one_span() -> None:
        with floor_tracer.start_as_current_span("GET /api/v1/orders/{order_id}", attributes=TYPICAL):
            pass

    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    logger = logging.getLogger("bench.redaction")
    logger.addHandler(LoggingHandler(logger_provider=logger_provider))
    logger.propagate = False
    logger.warning("order %s paid in %d ms by user_id=%d", "8f14e45f", 42, 7)
    logger.warning("login failed for bob@example.com password=%s", "hunter2")
    benign_log, sensitive_log = logs.get_finished_logs()

    big = json.dumps({"items": [{"id": i, "sku": f"SKU-{i:06d}", "note": "blue shoes size 42"} for i in range(120)]})
    url = "https://api.example.com/v1/users/123?page=2&limit=50"
    attributes = list(TYPICAL.items())

    def all_attributes() -> None:
        for key, value in attributes:
            redactor.redact(key, value)

    def all_attributes_cold() -> None:
        redactor._clean.clear()  # every value seen for the first time
        for key, value in attributes:
            redactor.redact(key, value)

    def span_cold() -> None:
        redaction.redactor._clean.clear()
        redaction.span(benign_span)

    cases: dict[str, Callable[[], object]] = {
        "floor: one recording span, 10 attributes": one_span,
        "redact span, 10 benign attributes (export thread)": lambda: redaction.span(benign_span),
        "redact span, 10 benign attributes, values never seen": span_cold,
        "redact span, 12 attributes, 2 sensitive": lambda: redaction.span(sensitive_span),
        "redact log record, benign": lambda: redaction.log(benign_log),
        "redact log record, e-mail + password": lambda: redaction.log(sensitive_log),
        "10 attributes through redact(), repeated values": all_attributes,
        "10 attributes through redact(), values never seen": all_attributes_cold,
        f"redact() of an {len(big) // 1024} KiB JSON string": lambda: redactor.redact("payload", big),
        "redact_url at source, no secret (request thread)": lambda: redact_url(url, DEFAULT_SENSITIVE_QUERY_PARAMETERS),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, function in cases.items():
            count = PER_ROUND // 20 if "KiB" in name else PER_ROUND
            samples[name].append(timed(function, count))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    floor = medians["floor: one recording span, 10 attributes"]
    width = max(len(name) for name in cases)
    print(f"{'case':<{width}}  {'median µs':>10}  {'x floor':>8}")
    for name, value in medians.items():
        print(f"{name:<{width}}  {value:>10.2f}  {value / floor:>8.2f}")
    for label in ("repeated values", "values never seen"):
        per_attribute = medians[f"10 attributes through redact(), {label}"] / 10
        rate = 1e6 / per_attribute
        print(f"throughput, benign attributes, {label}: {rate:,.0f}/s per core ({per_attribute:.2f} µs each)")


if __name__ == "__main__":
    main()
