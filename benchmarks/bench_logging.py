"""Cost per `logger.info()` call: bare logging, trace correlation, and OTLP-log export, veil against contrib.

Run: python benchmarks/bench_logging.py [--calls 20000] [--rounds 15]

One process, one run; every round measures every setup in turn (interleaved), and the table shows medians
over rounds. Each call is `logger.info("order %s paid", n)` inside a sampled span, through one handler that
formats "%(message)s" to a null stream; the `str arg` rows log `logger.info("login for %s", f"user-{n}")`
(a new text argument every call, which output redaction scans). "veil correlation" has output redaction
off (VEIL_REDACTION_LOG_OUTPUT=false); "+ output redaction" is veil's default. "export" adds a
BatchLogRecordProcessor with an exporter that drops the batches, so it measures the logging-thread cost
(record translation and enqueue), not the network.
The upstream package is opentelemetry-instrumentation-logging (`pip install veil[bench]`); it is imported
here only.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry._logs import _internal as logs_internal
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._once import Once

from veil.instrumentation.stdlib_logging import LoggingInstrumentor as VeilLogging


class NullExporter(LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class NullStream(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def set_global_logger_provider(provider: LoggerProvider) -> None:
    logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()
    logs_internal._LOGGER_PROVIDER = None
    logs_internal.set_logger_provider(provider)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    try:
        from opentelemetry.instrumentation.logging import LoggingInstrumentor as ContribLogging
    except ImportError:
        ContribLogging = None
        print("opentelemetry-instrumentation-logging is not installed: contrib rows skipped")

    tracer_provider = TracerProvider()
    tracer = tracer_provider.get_tracer("bench")
    logger_provider = LoggerProvider(shutdown_on_exit=False)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(NullExporter(), max_queue_size=1 << 16))
    set_global_logger_provider(logger_provider)

    root = logging.getLogger()
    root.handlers[:] = []
    handler = logging.StreamHandler(NullStream())
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logger = logging.getLogger("bench.app")

    def veil_correlation() -> Callable[[], None]:
        instrumentor = VeilLogging()
        instrumentor.instrument(tracer_provider=tracer_provider, redact_output=False)
        return instrumentor.uninstrument

    def veil_output() -> Callable[[], None]:
        instrumentor = VeilLogging()
        instrumentor.instrument(tracer_provider=tracer_provider, redact_output=True)
        return instrumentor.uninstrument

    def veil_export() -> Callable[[], None]:
        instrumentor = VeilLogging()
        instrumentor.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider, redact_output=False)
        return instrumentor.uninstrument

    def contrib(export: bool) -> Callable[[], Callable[[], None]]:
        def setup() -> Callable[[], None]:
            assert ContribLogging is not None
            instrumentor = ContribLogging()
            instrumentor.instrument(
                tracer_provider=tracer_provider,
                inject_trace_context=True,
                enable_log_auto_instrumentation=export,
            )
            return instrumentor.uninstrument

        return setup

    setups: dict[str, Callable[[], Callable[[], None]]] = {
        "bare logging": lambda: lambda: None,
        "veil correlation": veil_correlation,
        "veil correlation + output redaction": veil_output,
        "veil correlation + export": veil_export,
        "bare logging, str arg": lambda: lambda: None,
        "veil correlation + output redaction, str arg": veil_output,
    }
    if ContribLogging is not None:
        setups["contrib correlation"] = contrib(export=False)
        setups["contrib correlation + export"] = contrib(export=True)

    def run(calls: int, text: bool = False) -> float:
        with tracer.start_as_current_span("request"):
            start = time.perf_counter()
            if text:
                for number in range(calls):
                    logger.info("login for %s", f"user-{number}")
            else:
                for number in range(calls):
                    logger.info("order %s paid", number)
            elapsed = time.perf_counter() - start
        return elapsed / calls * 1e6

    results: dict[str, list[float]] = {name: [] for name in setups}
    for setup in setups.values():  # warm-up
        teardown = setup()
        run(1000)
        teardown()
    for _ in range(args.rounds):
        for name, setup in setups.items():
            teardown = setup()
            results[name].append(run(args.calls, text=name.endswith("str arg")))
            teardown()
            logger_provider.force_flush()

    bare = statistics.median(results["bare logging"])
    print(f"{args.calls} calls x {args.rounds} interleaved rounds, median microseconds per logger.info call\n")
    print(f"{'setup':46} {'us/call':>8} {'added':>8}")
    medians = {name: statistics.median(values) for name, values in results.items()}
    bare_text = medians["bare logging, str arg"]
    for name, median in medians.items():
        base = bare_text if name.endswith("str arg") else bare
        print(f"{name:46} {median:8.2f} {median - base:8.2f}")
    if ContribLogging is not None:
        print()
        for kind in ("correlation", "correlation + export"):
            ours = medians[f"veil {kind}"] - bare
            theirs = medians[f"contrib {kind}"] - bare
            ratio = ours / theirs if theirs > 0 else float("nan")
            print(f"veil/contrib added cost, {kind}: {ratio:.2f}")
    logger_provider.shutdown()


if __name__ == "__main__":
    main()
